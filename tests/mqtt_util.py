"""MQTT test helpers: a private Mosquitto, a publisher process, an in-process source."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
PUBLISHER = Path(__file__).resolve().parent / "mqtt_publisher.py"
SHARED_BROKER = ("127.0.0.1", 1883)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def broker_up(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def unique_prefix() -> str:
    """A topic prefix no other test (or helper) publishes under."""
    return f"t{uuid.uuid4().hex[:10]}"


class PrivateBroker:
    """``mosquitto -c <tmp conf>`` on a free port, persistence on, restartable.

    ``max_queued_messages 0`` (no limit): Mosquitto's default queues only 1000
    messages per offline client and drops the rest, which a hub that is down for a
    few seconds during a 5,000 msg/s stream exceeds. A real deployment needs the same
    setting (see connectors/mqtt docs).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {folder}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
            f"log_dest file {folder}/mosquitto.log\n"
            # Started as root, Mosquitto switches to the "mosquitto" user, which cannot
            # write (or even reach) a private test folder: no persistence, no log.
            + ("user root\n" if os.geteuid() == 0 else "")
        )
        self.proc: subprocess.Popen | None = None

    def start(self) -> PrivateBroker:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not broker_up("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"private mosquitto did not start: {self.log()[-2000:]}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """SIGTERM: Mosquitto writes its persistence file and exits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def log(self) -> str:
        path = self.folder / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""


def start_publisher(
    host: str, port: int, prefix: str, *, devices: int, per_device: int, rate: float = 0.0,
    batch: int = 1, start_epoch: int = 1_700_000_000, qos: int = 1,
) -> subprocess.Popen:
    """The publisher in its own process (tests/mqtt_publisher.py); it prints a JSON
    summary line when every message was acknowledged by the broker."""
    return subprocess.Popen(
        [sys.executable, str(PUBLISHER), "--host", host, "--port", str(port), "--prefix", prefix,
         "--devices", str(devices), "--per-device", str(per_device), "--rate", str(rate),
         "--batch", str(batch), "--start", str(start_epoch), "--qos", str(qos)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )


def count(url: str, sql: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql)).scalar_one()
    finally:
        engine.dispose()


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
