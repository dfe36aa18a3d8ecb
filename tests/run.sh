#!/usr/bin/env bash
# Install the test dependencies and run the whole test suite against real services.
#   ./tests/run.sh            # everything
#   ./tests/run.sh -k fit     # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Services the suite talks to over real connections, and tools it runs: install
# from Debian's packages when missing, start services when not running.
missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v pg_ctlcluster >/dev/null 2>&1 || missing+=(postgresql)
# gpsbabel: an independent FIT -> GPX/TCX converter for the dedupe tests.
command -v gpsbabel >/dev/null 2>&1 || missing+=(gpsbabel)
# The BLE end-to-end test boots a small VM (this kernel has no Bluetooth): qemu, a
# Debian kernel, BlueZ and D-Bus inside it (tests/ble_vm/run_vm.sh).
command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
ls /boot/vmlinuz-* >/dev/null 2>&1 || missing+=(linux-image-amd64)
command -v bluetoothd >/dev/null 2>&1 || [ -x /usr/libexec/bluetooth/bluetoothd ] || missing+=(bluez)
command -v dbus-daemon >/dev/null 2>&1 || missing+=(dbus)
command -v modprobe >/dev/null 2>&1 || missing+=(kmod)
command -v busybox >/dev/null 2>&1 || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -q && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if ! port_open 5432; then
  as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
fi
if ! port_open 1883; then
  as_root "$(command -v mosquitto || echo /usr/sbin/mosquitto)" -d -c /etc/mosquitto/mosquitto.conf
fi
for _ in $(seq 50); do port_open 5432 && break; sleep 0.2; done

# Python >= 3.11 in a project virtual environment.
py=python3
for candidate in python3.13 python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    py=$candidate; break
  fi
done
[ -x .venv/bin/python ] || "$py" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test,postgres]'
exec .venv/bin/python -m pytest "$@"
