"""The daemon's parts on their own: source backoff and failure reporting, systemd
notification over a real socket, structured logs, the status snapshot and metrics."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
from pathlib import Path

import pytest
import sqlalchemy as sa

from hub import logs, sdnotify
from hub.errors import SourceUnavailable
from hub.scheduling import SourceRunner, backoff_s
from hub.status import prometheus, snapshot
from hub.storage import Store


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    lows = [backoff_s(n, base_s=5, max_s=900, rand=lambda: 0.0) for n in range(1, 12)]
    highs = [backoff_s(n, base_s=5, max_s=900, rand=lambda: 1.0) for n in range(1, 12)]
    assert backoff_s(0, base_s=5, max_s=900) == 0
    assert highs[:4] == [5, 10, 20, 40]
    assert lows[:4] == [2.5, 5, 10, 20]
    assert max(highs) == 900 and highs[-1] == 900
    assert all(a <= b for a, b in zip(highs, highs[1:]))


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Flaky:
    def __init__(self) -> None:
        self.fail = True
        self.calls = 0

    def poll(self) -> int:
        self.calls += 1
        if self.fail:
            raise SourceUnavailable("folder /media/garmin is not mounted")
        return 3


@pytest.fixture
def store(db_url: str, tmp_path: Path):
    s = Store(db_url, tmp_path / "home")
    yield s
    s.close()


def _events(store: Store) -> list[tuple[str, str]]:
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text("SELECT kind, payload FROM outbox_events ORDER BY id"))]


def test_failing_source_backs_off_logs_once_and_recovers_once(store: Store, caplog) -> None:
    clock, source = Clock(), Flaky()
    runner = SourceRunner(name="garmin", kind="garmin_usb", poll=source.poll, engine=store.engine,
                          base_s=10, max_s=100, clock=clock)
    caplog.set_level(logging.DEBUG, logger="fithub.sources")
    runner()
    assert source.calls == 1 and runner.failures == 1
    runner()  # within the backoff: not called at all
    assert source.calls == 1
    for _ in range(5):  # keeps failing, each time after the (growing) backoff
        clock.t = runner.not_before + 0.01
        runner()
    assert source.calls == 6 and runner.failures == 6
    assert runner.not_before - clock.t <= 100  # capped
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "not mounted" in errors[0].getMessage()

    source.fail = False
    clock.t = runner.not_before + 0.01
    runner()
    runner()
    assert runner.failures == 0 and source.calls == 8
    recovered = [r for r in caplog.records if "recovered" in r.getMessage()]
    assert len(recovered) == 1

    kinds = [k for k, _ in _events(store)]
    assert kinds == ["source.failed", "source.recovered"]
    assert "not mounted" in json.loads(_events(store)[0][1])["error"]

    snap = snapshot(store.engine)
    (health,) = snap.sources
    assert health.name == "garmin" and health.ok and health.errors_total == 6 and health.items_total == 6
    assert health.last_success_at is not None
    text = prometheus(snap)
    assert 'fithub_source_errors_total{source="garmin"} 6' in text
    assert 'fithub_source_up{source="garmin"} 1' in text


def test_a_second_outage_is_a_new_event(store: Store) -> None:
    clock, source = Clock(), Flaky()
    runner = SourceRunner(name="s", kind="k", poll=source.poll, engine=store.engine, clock=clock)
    for fail in (True, False, True, False):
        source.fail = fail
        clock.t = runner.not_before + 1
        runner()
    assert [k for k, _ in _events(store)] == ["source.failed", "source.recovered"] * 2


def test_sd_notify_sends_datagrams_to_the_notify_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(2)
    try:
        assert sdnotify.notify("READY=1", env={"NOTIFY_SOCKET": str(path)})
        assert server.recv(100) == b"READY=1"
        assert not sdnotify.notify("READY=1", env={})
        assert not sdnotify.notify("READY=1", env={"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    finally:
        server.close()
    # Abstract namespace socket ("@name").
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"fithub-test-{os.getpid()}"
    abstract.bind("\0" + name)
    abstract.settimeout(2)
    try:
        assert sdnotify.notify("WATCHDOG=1", env={"NOTIFY_SOCKET": "@" + name})
        assert abstract.recv(100) == b"WATCHDOG=1"
    finally:
        abstract.close()


def test_watchdog_interval_is_half_of_watchdog_sec() -> None:
    assert sdnotify.watchdog_interval_s({"WATCHDOG_USEC": "60000000"}) == 30
    assert sdnotify.watchdog_interval_s({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}) == 30
    assert sdnotify.watchdog_interval_s({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}) is None
    assert sdnotify.watchdog_interval_s({}) is None
    assert sdnotify.watchdog_interval_s({"WATCHDOG_USEC": "junk"}) is None


def test_json_logs_are_one_object_per_line_with_extra_fields() -> None:
    stream = io.StringIO()
    logs.setup("info", "json", stream=stream)
    try:
        logging.getLogger("fithub.test").info("stored %s", "run.fit", extra={"source": "inbox"})
        logging.getLogger("fithub.test").debug("hidden")
    finally:
        logs.setup("warning", "text", stream=io.StringIO())
    (line,) = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["msg"] == "stored run.fit" and record["source"] == "inbox" and record["level"] == "info"
    assert record["ts"].endswith("Z")


def test_prometheus_text_escapes_labels(store: Store) -> None:
    snap = snapshot(store.engine)
    snap.files_by_source = {'watch:in"box\\': 2}
    text = prometheus(snap, started_at=1.5)
    assert 'fithub_imports_total{source="watch:in\\"box\\\\"} 2' in text
    assert "# TYPE fithub_imports_total counter" in text
    assert "fithub_start_time_seconds 1.5" in text
