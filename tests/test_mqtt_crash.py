"""The MQTT source under failure, with the real daemon (`fithub run`) as a subprocess.

- the hub SIGKILLed twice while 10,000 QoS 1 sample messages stream in, restarted
  each time: exactly 10,000 samples stored, none twice;
- the broker (a private Mosquitto with persistence on) restarted mid-stream: the hub
  reconnects and resumes by itself;
- two hub processes on one shared subscription and one PostgreSQL database: every
  message stored once, and both did part of the work.

These use a private Mosquitto (``tests/mqtt_util.PrivateBroker``): it can be
restarted, and it queues without limit for a client that is down (Mosquitto's
default keeps 1000 messages per offline client and drops the rest).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from daemon_util import DaemonProcess, write_config
from mqtt_util import PrivateBroker, count, start_publisher, unique_prefix, wait_until

N_MESSAGES = int(os.environ.get("FITHUB_MQTT_CRASH_MESSAGES", "10000"))
DEVICES = 20


def _config(home: Path, port: int, prefix: str, *, shared_group: str = "", extra: str = "") -> Path:
    return write_config(home, f"""
[hub]
log_format = "json"
[http]
port = 0
[sources.inbox]
type = "watch"
enabled = false
[sources.mq]
type = "mqtt"
port = {port}
subscriptions = {{ "{prefix}/+/samples" = "fithub" }}
session_gap_s = 3600
session_expiry_s = 3600
reconnect_max_s = 2
shared_group = "{shared_group}"
{extra}
""")


def _connections(daemon: DaemonProcess) -> int:
    return len(re.findall(r"MQTT (?:re)?connected to", daemon.log()))


def _start(home: Path, cfg: Path, env: dict | None = None) -> DaemonProcess:
    before = len(re.findall(r"MQTT (?:re)?connected to", (home / "daemon.log").read_text(errors="replace"))) if (home / "daemon.log").exists() else 0
    daemon = DaemonProcess(home, cfg, env=env).start()
    daemon.wait_ready(60)
    wait_until(lambda: _connections(daemon) > before, 30, "the hub's MQTT connection")
    return daemon


def _stored(url: str) -> tuple[int, int]:
    """(rows, distinct device+time) in live_samples."""
    rows = count(url, "SELECT count(*) FROM live_samples")
    distinct = count(url, "SELECT count(*) FROM (SELECT DISTINCT device, time_utc FROM live_samples) AS d")
    return rows, distinct


def _finish(publisher) -> dict:
    out, err = publisher.communicate(timeout=300)
    assert publisher.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def broker(tmp_path):
    b = PrivateBroker(tmp_path / "broker").start()
    yield b
    b.stop()


def test_sigkill_twice_mid_stream_stores_every_sample_once(broker, tmp_path) -> None:
    home = tmp_path / "home"
    prefix = unique_prefix()
    cfg = _config(home, broker.port, prefix)
    url = f"sqlite:///{home / 'fithub.db'}"
    daemon = _start(home, cfg)
    time.sleep(0.5)  # the SUBACK
    per_device = N_MESSAGES // DEVICES
    publisher = start_publisher("127.0.0.1", broker.port, prefix, devices=DEVICES, per_device=per_device, rate=700)
    at_kill = []
    try:
        for pause in (3.0, 2.5):
            time.sleep(pause)
            daemon.kill()
            at_kill.append(_stored(url)[0])
            daemon = _start(home, cfg)
        sent = _finish(publisher)
        assert sent["sent"] == N_MESSAGES
        wait_until(lambda: _stored(url)[0] >= N_MESSAGES, 120, f"{N_MESSAGES} samples", interval=0.5)
        time.sleep(1.0)  # anything still arriving would be a duplicate
        code, _ = daemon.terminate()
        assert code == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
        if publisher.poll() is None:
            publisher.kill()
    assert all(0 < n < N_MESSAGES for n in at_kill), f"the kills were not mid-stream: rows at each kill {at_kill}"
    assert _stored(url) == (N_MESSAGES, N_MESSAGES)
    assert count(url, "SELECT count(DISTINCT key) FROM live_samples") == N_MESSAGES


def test_broker_restart_mid_stream_is_survived(broker, tmp_path) -> None:
    home = tmp_path / "home"
    prefix = unique_prefix()
    cfg = _config(home, broker.port, prefix)
    url = f"sqlite:///{home / 'fithub.db'}"
    daemon = _start(home, cfg)
    time.sleep(0.5)
    n = 5000
    publisher = start_publisher("127.0.0.1", broker.port, prefix, devices=DEVICES, per_device=n // DEVICES, rate=700)
    try:
        time.sleep(2.5)
        broker.stop()
        mid = _stored(url)[0]
        time.sleep(1.0)
        broker.start()
        sent = _finish(publisher)
        assert sent["sent"] == n
        wait_until(lambda: _stored(url)[0] >= n, 120, f"{n} samples after the broker restart", interval=0.5)
        assert "MQTT reconnected" in daemon.log() and "connection to" in daemon.log()
        code, _ = daemon.terminate()
        assert code == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
        if publisher.poll() is None:
            publisher.kill()
    assert 0 < mid < n, f"the broker restart was not mid-stream ({mid} rows)"
    assert _stored(url) == (n, n)


def test_two_processes_share_the_load_on_postgresql(broker, tmp_path, pg_server_url) -> None:
    prefix = unique_prefix()
    env = {"FITHUB_DATABASE_URL": pg_server_url}
    homes = [tmp_path / "hub1", tmp_path / "hub2"]
    cfgs = [_config(h, broker.port, prefix, shared_group="fithub") for h in homes]
    daemons = [_start(h, c, env) for h, c in zip(homes, cfgs)]
    time.sleep(0.5)
    n = 10000
    publisher = start_publisher("127.0.0.1", broker.port, prefix, devices=DEVICES, per_device=n // DEVICES, rate=0)
    try:
        _finish(publisher)
        wait_until(lambda: _stored(pg_server_url)[0] >= n, 120, f"{n} samples in PostgreSQL", interval=0.5)
        time.sleep(1.0)
        for d in daemons:
            code, _ = d.terminate()
            assert code == 0
    finally:
        for d in daemons:
            if d.proc.poll() is None:
                d.kill()
        if publisher.poll() is None:
            publisher.kill()
    assert _stored(pg_server_url) == (n, n)
    work = [_committed(d) for d in daemons]
    assert sum(work) >= n and all(w > 0.1 * n for w in work), f"messages committed per process: {work}"


def _committed(daemon: DaemonProcess) -> int:
    for line in daemon.log_lines():
        if "committed" in line and line.get("source") == "mq":
            return int(line["committed"])
    raise AssertionError(f"no stop summary in the log:\n{daemon.log()[-3000:]}")
