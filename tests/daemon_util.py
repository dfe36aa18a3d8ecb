"""Running the real daemon (`fithub run`) as a subprocess, and a real webhook receiver."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
FITHUB = Path(sys.executable).parent / "fithub"


def fithub_cmd() -> list[str]:
    """The installed console script, or the module when running from a bare checkout."""
    if FITHUB.exists():
        return [str(FITHUB)]
    return [sys.executable, "-c", "from cli import app; app()"]


def write_config(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.toml"
    path.write_text(text)
    return path


class DaemonProcess:
    """`fithub run` with a given home and config; output collected in home/daemon.log."""

    def __init__(self, home: Path, config: Path, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.config = config
        self.env = {**os.environ, "FITHUB_HOME": str(home), **(env or {})}
        self.env.pop("FITHUB_DATABASE_URL", None) if "FITHUB_DATABASE_URL" not in (env or {}) else None
        self.proc: subprocess.Popen | None = None
        self.log_path = home / "daemon.log"

    def start(self) -> DaemonProcess:
        (self.home / "http.port").unlink(missing_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*fithub_cmd(), "run", "--config", str(self.config)],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        return self

    def wait_ready(self, timeout: float = 30) -> int:
        """Until the HTTP endpoint is up; returns its port."""
        deadline = time.monotonic() + timeout
        port_file = self.home / "http.port"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            if port_file.exists() and port_file.read_text().strip():
                return int(port_file.read_text())
            time.sleep(0.05)
        raise AssertionError(f"daemon not ready within {timeout} s:\n{self.log()}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._log.close()

    def terminate(self, timeout: float = 10) -> tuple[int, float]:
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._log.close()
        return code, time.monotonic() - started

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_lines(self) -> list[dict]:
        lines = []
        for line in self.log().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
        return lines


def files_under(folder: Path) -> list[Path]:
    # os.walk, not rglob: the daemon removes emptied sub-folders while we look, and
    # os.walk skips a folder that vanished instead of raising.
    return sorted(Path(root) / name for root, _, names in os.walk(folder) for name in names)


def wait_for(predicate, timeout: float, what: str, proc: DaemonProcess | None = None, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.proc.poll() is not None:
            raise AssertionError(f"daemon exited ({proc.proc.returncode}) while waiting for {what}:\n{proc.log()[-5000:]}")
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}" + (f"\n{proc.log()[-5000:]}" if proc else ""))


def copy_slowly(src: Path, dst: Path, chunk: int = 8192, pause: float = 0.25) -> threading.Thread:
    """Write ``src`` to ``dst`` in chunks with pauses, like a slow sync client."""

    def run() -> None:
        data = src.read_bytes()
        with open(dst, "wb") as f:
            for i in range(0, len(data), chunk):
                f.write(data[i : i + chunk])
                f.flush()
                time.sleep(pause)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


class Receiver:
    """A real HTTP server receiving webhook POSTs; fails the first ``fail_first``
    requests with 503, and can be told to fail again. Dedupe by Idempotency-Key is
    what a well-behaved receiver does; ``processed`` is after that dedupe."""

    def __init__(self, fail_first: int = 0, delay_s: float = 0.0) -> None:
        self.fail_remaining = fail_first
        self.delay_s = delay_s
        self.requests = 0
        self.keys: Counter[str] = Counter()
        self.processed: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests += 1
                    fail = receiver.fail_remaining > 0
                    if fail:
                        receiver.fail_remaining -= 1
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                if fail:
                    self.send_response(503)
                    self.end_headers()
                    return
                key = self.headers.get("Idempotency-Key", "")
                with receiver.lock:
                    receiver.keys[key] += 1
                    if receiver.keys[key] == 1:
                        receiver.processed.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def db_counts(db: Path) -> dict[str, int]:
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return {
                t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
                for t in ("raw_files", "workouts", "versions", "ingest_state", "outbox_events")
            }
    finally:
        engine.dispose()


def db_query(db: Path, sql: str) -> list[tuple]:
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


def copy_file(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
