"""The real daemon, end to end: `fithub run` as a subprocess with a temporary home,
real files dropped into its inbox (some slowly, some broken), a real webhook
receiver, the HTTP endpoint, and a clean SIGTERM."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from daemon_util import (
    DaemonProcess, Receiver, copy_file, copy_slowly, db_counts, files_under, fithub_cmd, wait_for, write_config,
)

VALID = [
    "fit/fitparse__activity-small-fenix2-run.fit",
    "fit/fit4s__fenix5_openwater_521.fit",
    "gpx/runpandas__strava_export.gpx",
    "tcx/tcxparser__test.tcx",
]
SLOW = ["fit/fit4s__edge1040_1536.fit", "gpx/opentracks__gpx11_with_speed_no_namespace.gpx"]


def _config(home: Path, hook_url: str, extra: str = "") -> Path:
    return write_config(home, f"""
[hub]
log_format = "json"
log_level = "info"

[http]
port = 0

[outbox]
interval_s = 0.2
retry_base_s = 0.2
retry_max_s = 1

[sources.inbox]
type = "watch"
interval_s = 0.3
settle_s = 1

[notifiers.hook]
type = "webhook"
url = "{hook_url}"
{extra}
""")


def _get(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_daemon_imports_inbox_quarantines_broken_and_notifies(shared: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    receiver = Receiver(fail_first=3)  # the receiver is down for a while at first
    daemon = DaemonProcess(home, _config(home, receiver.url)).start()
    try:
        port = daemon.wait_ready()
        inbox, archive, quarantine = home / "inbox", home / "archive", home / "quarantine"
        assert inbox.is_dir() and archive.is_dir() and quarantine.is_dir()

        for rel in VALID:
            copy_file(shared / rel, inbox / Path(rel).name)
        (inbox / "sub").mkdir()
        writers = [copy_slowly(shared / rel, inbox / "sub" / Path(rel).name, chunk=65536, pause=0.4) for rel in SLOW]
        # Broken files: empty, not XML at all, a FIT cut after its header.
        (inbox / "empty.fit").write_bytes(b"")
        (inbox / "notes.gpx").write_text("this is not a GPX file\n")
        (inbox / "cut.fit").write_bytes((shared / VALID[0]).read_bytes()[:100])
        for w in writers:
            w.join()

        total_valid = len(VALID) + len(SLOW)
        wait_for(lambda: len(files_under(archive)) == total_valid and not files_under(inbox), 90,
                 "every file to leave the inbox", daemon)
        wait_for(lambda: len([p for p in files_under(quarantine) if p.suffix != ".reason"]) == 3, 30,
                 "three quarantined files", daemon)

        archived = {p.name for p in files_under(archive)}
        assert archived == {Path(r).name for r in VALID + SLOW}
        assert (archive / "sub" / Path(SLOW[0]).name).read_bytes() == (shared / SLOW[0]).read_bytes(), \
            "the slowly written file was taken only once complete"
        for name in ("empty.fit", "notes.gpx", "cut.fit"):
            reason = (quarantine / f"{name}.reason").read_text()
            assert reason.strip(), f"{name}.reason explains the rejection"
        assert "empty" in (quarantine / "empty.fit.reason").read_text()

        counts = db_counts(home / "fithub.db")
        assert counts["raw_files"] == total_valid
        assert counts["workouts"] == total_valid  # six different workouts
        assert counts["ingest_state"] == total_valid + 3

        # Every activity event reaches the webhook despite its early failures, once per key.
        wait_for(lambda: len(receiver.keys) >= total_valid, 60, "webhook deliveries", daemon)
        kinds = [e["kind"] for e in receiver.processed]
        assert kinds.count("activity.stored") == total_valid
        assert receiver.requests >= total_valid + 3

        status, body = _get(port, "/healthz")
        health = json.loads(body)
        assert status == 200 and health["status"] == "ok" and health["sources"]["inbox"] == "ok"
        status, body = _get(port, "/metrics")
        metrics = body.decode()
        imports = sum(float(l.rsplit(" ", 1)[1]) for l in metrics.splitlines() if l.startswith("fithub_imports_total{"))
        rejects = sum(float(l.rsplit(" ", 1)[1]) for l in metrics.splitlines() if l.startswith("fithub_rejects_total{"))
        assert (imports, rejects) == (total_valid, 3)
        assert 'fithub_source_up{source="inbox"} 1' in metrics
        assert "fithub_outbox_depth" in metrics

        # `fithub status` reads the same from the database, from another process.
        out = subprocess.run([*fithub_cmd(), "--home", str(home), "status", "--json"], capture_output=True, text=True,
                             timeout=60, env={**os.environ, "FITHUB_HOME": str(home)})
        assert out.returncode == 0, out.stderr
        st = json.loads(out.stdout)
        assert st["workouts"] == total_valid and st["sources"][0]["name"] == "inbox" and st["sources"][0]["ok"]

        code, took = daemon.terminate()
        assert code == 0 and took < 10, daemon.log()[-3000:]
        lines = daemon.log_lines()
        assert lines, "logs are JSON lines on stdout"
        assert any(l["msg"] == "fithub stopped" for l in lines)
        assert all({"ts", "level", "logger", "msg"} <= set(l) for l in lines)
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
        receiver.close()


def test_defaults_without_config_and_env_override(tmp_path: Path, own: Path) -> None:
    """No config file: SQLite in the home, <home>/inbox watched, no broker. The HTTP
    port comes from an environment override."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "FITHUB_HOME": str(home), "FITHUB_HTTP__PORT": "0", "FITHUB_HUB__LOG_FORMAT": "text"}
    env.pop("FITHUB_CONFIG", None)
    env.pop("FITHUB_DATABASE_URL", None)
    log = open(home / "daemon.log", "wb")
    proc = subprocess.Popen([*fithub_cmd(), "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: (home / "http.port").exists(), 30, "the daemon to start")
        copy_file(own / "samples" / "morning_run.gpx", home / "inbox" / "morning_run.gpx")
        wait_for(lambda: (home / "archive" / "morning_run.gpx").exists(), 60, "the default inbox to be taken")
        assert db_counts(home / "fithub.db")["workouts"] == 1
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        log.close()
    text = (home / "daemon.log").read_text()
    assert "built-in defaults" in text and "INFO" in text, text[-2000:]


def test_sigterm_during_a_long_import_exits_cleanly(shared: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    cfg = write_config(home, """
[http]
port = 0
[sources.inbox]
type = "watch"
interval_s = 0.2
settle_s = 0.2
""")
    inbox = home / "inbox"
    inbox.mkdir(parents=True)
    fits = sorted((shared / "fit").glob("*.fit"))
    for f in fits:
        copy_file(f, inbox / f.name)
    daemon = DaemonProcess(home, cfg).start()
    daemon.wait_ready()
    wait_for(lambda: len(files_under(home / "archive")) >= 3, 60, "the import to be under way", daemon)
    code, took = daemon.terminate(timeout=15)
    assert code == 0 and took < 10, f"exit {code} after {took:.1f} s"
    # Nothing half-done: every file is either still in the inbox or fully handled.
    handled = {p.name for p in files_under(home / "archive")} | {
        p.name for p in files_under(home / "quarantine") if p.suffix != ".reason"
    }
    left = {p.name for p in files_under(inbox)}
    assert handled | left == {f.name for f in fits} and not handled & left
    assert db_counts(home / "fithub.db")["ingest_state"] == len(handled)


def test_systemd_notify_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    """Under systemd (Type=notify): READY=1 once running, WATCHDOG=1 at half of
    WatchdogSec, STOPPING=1 on SIGTERM; here against a real notify socket."""
    import socket

    home = tmp_path / "home"
    cfg = write_config(home, "[http]\nport = 0\n")
    sock_path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(30)
    daemon = DaemonProcess(home, cfg, env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1000000"}).start()
    try:
        messages = [sock.recv(200).decode()]
        assert messages[0].startswith("READY=1")
        daemon.wait_ready()
        messages += [sock.recv(200).decode() for _ in range(2)]
        assert messages[1:] == ["WATCHDOG=1", "WATCHDOG=1"]
        code, took = daemon.terminate()
        assert code == 0
        rest = []
        sock.settimeout(0.5)
        try:
            while True:
                rest.append(sock.recv(200).decode())
        except TimeoutError:
            pass
        assert "STOPPING=1" in rest
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
        sock.close()


def test_the_service_unit_passes_systemd_analyze(tmp_path: Path) -> None:
    import shutil

    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    unit = (Path(__file__).resolve().parents[1] / "config" / "fithub.service").read_text()
    assert "Type=notify" in unit and "WatchdogSec=" in unit and "StateDirectory=fithub" in unit
    # Point ExecStart at the real installed command; everything else as shipped.
    exe = fithub_cmd()[0]
    local = tmp_path / "fithub.service"
    local.write_text(unit.replace("/opt/fithub/.venv/bin/fithub", exe))
    out = subprocess.run([analyze, "verify", str(local)], capture_output=True, text=True, timeout=60)
    complaints = [l for l in (out.stdout + out.stderr).splitlines() if "fithub.service" in l]
    assert complaints == [], complaints


def test_push_source_health_reaches_status_and_metrics(tmp_path: Path) -> None:
    """A push source (MQTT, on the real broker) reports its own health: connected,
    messages committed, malformed payloads; `fithub status` and /metrics show it."""
    import uuid

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    home = tmp_path / "home"
    prefix = f"fithub-test-{uuid.uuid4().hex[:8]}"
    cfg = write_config(home, f"""
[http]
port = 0
[sources.inbox]
enabled = false
[sources.bus]
type = "mqtt"
subscriptions = {{ "{prefix}/+/samples" = "fithub" }}
session_expiry_s = 60
""")
    daemon = DaemonProcess(home, cfg).start()
    try:
        port = daemon.wait_ready()
        wait_for(lambda: json.loads(_get(port, "/healthz")[1])["sources"].get("bus") == "ok", 30,
                 "the MQTT source to report itself connected", daemon)
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        pub.connect("127.0.0.1", 1883)
        pub.loop_start()
        now = time.time()
        for i in range(5):
            pub.publish(f"{prefix}/strap1/samples", json.dumps({"v": 1, "t": now + i, "seq": i, "hr": 120 + i}), qos=1).wait_for_publish(5)
        pub.publish(f"{prefix}/strap1/samples", b"{not json", qos=1).wait_for_publish(5)
        pub.loop_stop()
        pub.disconnect()

        def metric(name: str) -> float | None:
            for line in _get(port, "/metrics")[1].decode().splitlines():
                if line.startswith(f'{name}{{source="bus"}}'):
                    return float(line.rsplit(" ", 1)[1])
            return None

        wait_for(lambda: metric("fithub_source_errors_total") == 1, 30, "the malformed payload to be counted", daemon)
        assert metric("fithub_source_up") == 1
        out = subprocess.run([*fithub_cmd(), "status", "--json"], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "FITHUB_HOME": str(home)})
        bus = next(s for s in json.loads(out.stdout)["sources"] if s["name"] == "bus")
        assert bus["ok"] and bus["kind"] == "mqtt" and bus["items_total"] == 5 and bus["errors_total"] == 1
        code, _ = daemon.terminate()
        assert code == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()
