"""systemd's notify protocol (``Type=notify``): readiness, watchdog, stopping.

Twenty lines of datagram socket code instead of a dependency: the protocol is a
text message to the socket named by ``$NOTIFY_SOCKET`` (a leading ``@`` means
Linux's abstract namespace). Without that variable (not under systemd) every
call is a no-op.
"""

from __future__ import annotations

import os
import socket


def notify(message: str, env: dict[str, str] | None = None) -> bool:
    """Send ``message`` (e.g. "READY=1"); True when a socket was there to take it."""
    env = os.environ if env is None else env
    address = env.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        return False  # systemd went away; nothing useful to do about it here
    return True


def watchdog_interval_s(env: dict[str, str] | None = None) -> float | None:
    """How often to send WATCHDOG=1: half of ``WatchdogSec`` as systemd recommends,
    or None when no watchdog is set for this process."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC")
    pid = env.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        return max(int(usec) / 1e6 / 2, 0.5)
    except ValueError:
        return None
