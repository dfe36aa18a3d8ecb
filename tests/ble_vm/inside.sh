#!/bin/sh
# Runs inside the virtme-ng VM (see run_vm.sh): Bluetooth from the kernel's vhci
# driver, a system D-Bus and bluetoothd, then the end-to-end test.
# $1: the repository, $2: the (writable) output folder.
set -u
REPO="$1"
OUT="$2"
log() { echo "[vm] $*" >&2; }

modprobe hci_vhci || { log "modprobe hci_vhci failed"; echo 90 > "$OUT/rc"; exit 90; }
mkdir -p /run/dbus /var/run/dbus /var/lib/bluetooth
dbus-daemon --system --fork --nopidfile || { log "dbus-daemon failed"; echo 91 > "$OUT/rc"; exit 91; }
BLUETOOTHD=$(command -v bluetoothd || echo /usr/libexec/bluetooth/bluetoothd)
"$BLUETOOTHD" -n > "$OUT/bluetoothd.log" 2>&1 &
sleep 1

cd "$REPO" || exit 92
export PYTHONDONTWRITEBYTECODE=1 FITHUB_VM_OUT="$OUT" TMPDIR=/tmp
"$REPO/.venv/bin/python" -m pytest tests/ble_vm/vm_e2e.py -x -q -p no:cacheprovider -o addopts="" \
    --basetemp=/tmp/fithub-vm-pytest > "$OUT/pytest.log" 2>&1
rc=$?
echo "$rc" > "$OUT/rc"
log "pytest exited $rc"
exit "$rc"
