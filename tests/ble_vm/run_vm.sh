#!/bin/sh
# The BLE end-to-end test through the real stack (bleak -> BlueZ -> /dev/vhci ->
# bumble), in a small VM because this machine's kernel has no Bluetooth.
#
#   tests/ble_vm/run_vm.sh [--install] [OUT_DIR]
#
# --install first installs what is missing: Debian's qemu-system-x86,
# linux-image-amd64, bluez, dbus, kmod, busybox-static, and PyPI's virtme-ng and
# bumble into the project's .venv. The VM boots Debian's kernel on the host's root
# file system (read-only, with a throw-away overlay), so the VM runs the very
# .venv and code of this checkout. Exit status: the in-VM pytest's, or 2 when a
# tool is missing, 3 when the VM gave no result.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
INSTALL=0
if [ "${1:-}" = "--install" ]; then INSTALL=1; shift; fi
OUT=${1:-$(mktemp -d /tmp/fithub-ble-vm.XXXXXX)}
mkdir -p "$OUT"
rm -f "$OUT/rc"
PY="$REPO/.venv/bin/python"

kernel() { ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1; }

if [ "$INSTALL" = 1 ]; then
    missing=""
    command -v qemu-system-x86_64 >/dev/null || missing="$missing qemu-system-x86"
    [ -n "$(kernel)" ] || missing="$missing linux-image-amd64"
    command -v bluetoothd >/dev/null || [ -x /usr/libexec/bluetooth/bluetoothd ] || missing="$missing bluez"
    command -v dbus-daemon >/dev/null || missing="$missing dbus"
    command -v modprobe >/dev/null || missing="$missing kmod"
    command -v busybox >/dev/null || missing="$missing busybox-static"
    if [ -n "$missing" ]; then
        echo "installing:$missing" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2 || exit 2
    fi
    "$PY" -c "import virtme_ng, bumble" 2>/dev/null || "$REPO/.venv/bin/pip" install -q virtme-ng bumble >&2 || exit 2
fi

for tool in qemu-system-x86_64 dbus-daemon modprobe; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (run with --install)" >&2; exit 2; }
done
[ -x "$REPO/.venv/bin/vng" ] || { echo "missing: virtme-ng in .venv (run with --install)" >&2; exit 2; }
KERNEL=$(kernel)
[ -n "$KERNEL" ] || { echo "missing: a kernel in /boot (linux-image-amd64; run with --install)" >&2; exit 2; }

# Nested KVM was seen to hang at boot here; TCG boots Debian's kernel in ~30 s.
ACCEL="--disable-kvm"
[ "${FITHUB_VM_KVM:-0}" = 1 ] && ACCEL=""

echo "booting $KERNEL (output in $OUT)" >&2
PATH="$REPO/.venv/bin:$PATH" timeout "${FITHUB_VM_TIMEOUT:-330}" vng $ACCEL -r "$KERNEL" --user root --memory 1536M \
    --rwdir "$OUT" --exec "sh $REPO/tests/ble_vm/inside.sh $REPO $OUT" > "$OUT/vm.log" 2>&1
status=$?
if [ ! -f "$OUT/rc" ]; then
    echo "the VM gave no result (vng exit $status); see $OUT/vm.log" >&2
    tail -n 30 "$OUT/vm.log" >&2
    exit 3
fi
cat "$OUT/pytest.log"
exit "$(cat "$OUT/rc")"
