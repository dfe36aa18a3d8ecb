"""The BLE end-to-end test through the real Bluetooth stack, in a VM.

``tests/ble_vm/run_vm.sh`` boots Debian's kernel under virtme-ng (QEMU), loads
the ``hci_vhci`` driver, starts D-Bus and bluetoothd, and runs
``tests/ble_vm/vm_e2e.py`` there: fithub's bleak transport scans, connects,
receives notifications and indications through BlueZ from bumble's virtual
peripherals, survives a forced disconnect, and stores the session and a weighing.

Skipped, with the reason, when the tools are missing (``run_vm.sh --install``
installs them) or when ``FITHUB_SKIP_BLE_VM=1``. It takes about 3-5 minutes on
an emulated (TCG) VM.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "ble_vm" / "run_vm.sh"


def _missing() -> list[str]:
    missing = []
    if not sys.platform.startswith("linux"):
        return ["Linux"]
    if shutil.which("qemu-system-x86_64") is None:
        missing.append("qemu-system-x86_64 (Debian qemu-system-x86)")
    if not glob.glob("/boot/vmlinuz-*"):
        missing.append("a kernel in /boot (Debian linux-image-amd64)")
    if shutil.which("dbus-daemon") is None:
        missing.append("dbus-daemon (Debian dbus)")
    if shutil.which("bluetoothd") is None and not os.path.exists("/usr/libexec/bluetooth/bluetoothd"):
        missing.append("bluetoothd (Debian bluez)")
    if not (ROOT / ".venv" / "bin" / "vng").exists():
        missing.append("virtme-ng in .venv (PyPI virtme-ng)")
    try:
        import bumble  # noqa: F401
    except ImportError:
        missing.append("bumble (PyPI)")
    return missing


def test_ble_end_to_end_through_bluez_in_a_vm(tmp_path):
    if os.environ.get("FITHUB_SKIP_BLE_VM") == "1":
        pytest.skip("FITHUB_SKIP_BLE_VM=1")
    missing = _missing()
    if missing:
        pytest.skip("BLE VM test needs " + ", ".join(missing) + f"; `{SCRIPT.relative_to(ROOT)} --install` installs them")
    out = tmp_path / "vm"
    proc = subprocess.run(["sh", str(SCRIPT), str(out)], capture_output=True, text=True, timeout=420)
    if proc.returncode in (2, 3):  # a tool missing, or the VM itself failed (no result)
        pytest.fail(f"the VM did not run the test (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    timings = (out / "timings.txt").read_text() if (out / "timings.txt").exists() else ""
    assert proc.returncode == 0, f"in-VM test failed:\n{proc.stdout[-6000:]}\n{timings}"
    assert " passed" in proc.stdout
