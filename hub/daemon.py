"""``fithub run``: the long-running hub.

One process: a scheduler thread pool runs the polling sources and the outbox
dispatcher; push sources run on their own threads; a loopback HTTP endpoint
answers ``/healthz`` and ``/metrics``; the main thread waits for a signal and
feeds systemd's watchdog.

Crash safety does not live here: every file's data, its ingest state and its
events commit in one transaction, and files on disk are moved only after that
commit. So SIGKILL at any instant is safe, and SIGTERM only has to stop taking
new work and let in-flight work finish (``drain_timeout_s``) before exiting.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from hub import sdnotify
from hub.decoding import registry
from hub.model import DEFAULT_PERSON
from hub.pipeline import ingest
from hub.errors import FithubError
from hub.httpd import StatusServer
from hub.live import LiveFanout, live_consumers
from hub.plugins import GROUPS, Hub, PollingSource, PushSource, discover
from hub.scheduling import SourceRunner, record_push_health
from hub.status import prometheus, snapshot
from hub.storage.repository import Store

log = logging.getLogger("fithub.daemon")


@dataclass
class Loaded:
    """The plugins this run uses, and those that failed (name -> why)."""

    sources: dict[str, Any] = field(default_factory=dict)
    consumers: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


class Daemon:
    def __init__(self, config, *, plugins: dict[str, dict[str, Any]] | None = None) -> None:
        self.config = config
        self._plugins = plugins
        self.stopping = threading.Event()
        self.started_at = time.time()
        self.store: Store | None = None
        self.scheduler: BackgroundScheduler | None = None
        self.http: StatusServer | None = None
        self.outbox = None
        self.live = LiveFanout()  # consumers are set once the plugins are loaded
        self.loaded = Loaded()
        self.runners: dict[str, SourceRunner] = {}
        self._inflight = 0
        self._inflight_cv = threading.Condition()
        self._ready = False

    # -- start -------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.config
        home = Path(cfg.home)
        home.mkdir(parents=True, exist_ok=True)
        self.store = Store(cfg.database_url, home, policy=cfg.merge_policy)
        log.info("database %s, data in %s", self.store.safe_url, home)
        self.decoding = registry()
        hub = Hub(
            store=self.store, home=home, stopping=self.stopping, import_bytes=self.import_bytes,
            log=logging.getLogger("fithub"), default_person=cfg.hub.get("person") or DEFAULT_PERSON,
            publish_live=self.live.publish,
        )
        self.hub = hub
        self._load_plugins(hub)
        self._start_outbox()
        self._start_live()
        self._start_scheduler()
        self._start_push_sources()
        self._start_http()
        self._ready = True
        log.info(
            "fithub is running: %d sources, %d sinks/notifiers%s",
            len(self.loaded.sources), len(self.loaded.consumers),
            f", {len(self.loaded.failed)} plugins skipped" if self.loaded.failed else "",
        )

    def _factories(self, group: str) -> dict[str, Any]:
        if self._plugins is not None and group in self._plugins:
            return self._plugins[group]
        found = {}
        for name, info in discover(group).items():
            found[name] = info.loaded if info.loaded is not None else info.error
        return found

    def _load_plugins(self, hub: Hub) -> None:
        for label, why in self.config.skipped.items():
            self._skip(label, why)
        for group in ("sources", "sinks", "notifiers"):
            factories = self._factories(group)
            for name, section in getattr(self.config, group).items():
                if not section.enabled:
                    log.info("%s %s is disabled in the config", group[:-1], name)
                    continue
                if f"{group}.{name}" in self.config.skipped:
                    continue
                factory = factories.get(section.type)
                label = f"{group}.{name}"
                if factory is None or isinstance(factory, str):
                    why = f"plugin type {section.type!r} " + (f"failed to load: {factory}" if factory else "is not installed")
                    self._skip(label, why)
                    continue
                try:
                    plugin = factory(name, dict(section.options), hub)
                except Exception as exc:  # a broken plugin is skipped, the hub keeps running
                    self._skip(label, f"failed to start: {type(exc).__name__}: {exc}")
                    continue
                if group == "sources":
                    self.loaded.sources[name] = plugin
                else:
                    self.loaded.consumers[name] = plugin

    def _skip(self, label: str, why: str) -> None:
        self.loaded.failed[label] = why
        log.error("%s skipped: %s", label, why, extra={"plugin": label})

    def _start_outbox(self) -> None:
        from hub.outbox import Outbox

        settings = dict(self.config.outbox)
        self.outbox = Outbox(self.store, self.loaded.consumers, stopping=self.stopping, **_outbox_settings(settings))
        self.outbox.register()

    def _start_live(self) -> None:
        """Live values (1 Hz sensor readings) skip the outbox: a bounded queue and
        one worker thread hand them to the consumers that have ``live``."""
        self.live.consumers = live_consumers(self.loaded.consumers)
        self.live.start()

    def _start_scheduler(self) -> None:
        workers = max(2, min(8, len(self.loaded.sources) + 1))
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=workers)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone="UTC",
        )
        hubcfg = self.config.hub
        for name, source in self.loaded.sources.items():
            if not isinstance(source, PollingSource):
                continue
            runner = SourceRunner(
                name=name,
                kind=self.config.sources[name].type,
                poll=source.poll,
                engine=self.store.engine,
                base_s=float(hubcfg.get("source_backoff_base_s", 5)),
                max_s=float(hubcfg.get("source_backoff_max_s", 900)),
            )
            self.runners[name] = runner
            interval = float(getattr(source, "interval_s", None) or self.config.sources[name].options.get("interval_s") or 60)
            # First run right away: a file waiting in the inbox should not wait an interval.
            self.scheduler.add_job(
                self._tracked(runner), "interval", seconds=interval, id=f"source:{name}", name=f"source {name}",
                next_run_time=_now(),
            )
        if any(callable(getattr(s, "health", None)) for s in self.loaded.sources.values()):
            self.scheduler.add_job(
                self._tracked(self._record_push_health), "interval", seconds=5, id="push-health",
                name="push source health", next_run_time=_now(),
            )
        self.scheduler.add_job(
            self._tracked(self._dispatch), "interval", seconds=float(self.config.outbox.get("interval_s", 1.0)),
            id="outbox", name="outbox", next_run_time=_now(),
        )
        self.scheduler.start()

    def _record_push_health(self) -> None:
        for name, source in self.loaded.sources.items():
            health = getattr(source, "health", None)
            if isinstance(source, PollingSource) or not callable(health):
                continue
            try:
                record_push_health(self.store.engine, name, self.config.sources[name].type, health())
            except Exception as exc:  # a report is nice to have; never worth stopping for
                log.debug("could not record the health of %s: %s", name, exc)

    def _dispatch(self) -> None:
        try:
            self.outbox.run_once()
        except Exception as exc:  # the database may be briefly away; the next turn retries
            log.warning("outbox delivery turn failed: %s", exc)

    def _tracked(self, job):
        """Count a job as in flight while it runs, so shutdown can wait for it."""

        def run() -> None:
            if self.stopping.is_set():
                return
            with self._inflight_cv:
                self._inflight += 1
            try:
                job()
            finally:
                with self._inflight_cv:
                    self._inflight -= 1
                    self._inflight_cv.notify_all()

        return run

    def _start_push_sources(self) -> None:
        for name, source in list(self.loaded.sources.items()):
            if isinstance(source, PollingSource) or not isinstance(source, PushSource):
                continue
            try:
                source.start()
            except Exception as exc:
                del self.loaded.sources[name]
                self._skip(f"sources.{name}", f"failed to start: {type(exc).__name__}: {exc}")

    def _start_http(self) -> None:
        http = self.config.http
        if not http.get("enabled", True):
            return
        routes = {"/healthz": self._healthz, "/metrics": self._metrics}
        try:
            self.http = StatusServer(http.get("host", "127.0.0.1"), int(http.get("port", 8787)), routes)
        except OSError as exc:  # e.g. the port is taken: report, keep importing
            log.error("HTTP endpoint %s:%s not started: %s", http.get("host"), http.get("port"), exc)
            return
        self.http.start()
        host, port = self.http.address
        log.info("health and metrics on http://%s:%d/healthz and /metrics", host, port, extra={"http_port": port})
        # Tests and scripts that asked for port 0 learn the real one here.
        (Path(self.config.home) / "http.port").write_text(f"{port}\n")

    def import_bytes(self, data: bytes, *, name: str, source: str, person: str | None = None, ingest_mark=None):
        """For push sources: one payload through the normal pipeline (dedupe,
        events, all in one transaction)."""
        return ingest(
            self.store, data, name=name, decoders=self.decoding.decoders, sniff=self.decoding.sniff,
            person=person or self.config.hub.get("person") or DEFAULT_PERSON, source=source, ingest_mark=ingest_mark,
        )

    # -- HTTP routes ---------------------------------------------------------

    def _healthz(self) -> tuple[int, str, bytes]:
        snap = snapshot(self.store.engine)
        running = bool(self.scheduler and self.scheduler.running) and not self.stopping.is_set()
        body = {
            "status": "ok" if running else "stopping",
            "sources": {s.name: ("ok" if s.ok else f"failing: {s.last_error}") for s in snap.sources},
            "plugins_skipped": self.loaded.failed,
            "outbox_pending": sum(snap.outbox_pending.values()),
            "outbox_dead": sum(snap.outbox_dead.values()),
        }
        return (200 if running else 503), "application/json", json.dumps(body).encode()

    def _metrics(self) -> tuple[int, str, bytes]:
        text = prometheus(snapshot(self.store.engine), started_at=self.started_at)
        return 200, "text/plain; version=0.0.4; charset=utf-8", text.encode()

    # -- run and stop --------------------------------------------------------

    def run_forever(self) -> int:
        """Start, wait for SIGTERM/SIGINT, drain, stop. Returns the exit status."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, frame: self.request_stop(signal.Signals(signum).name))
        try:
            self.start()
        except FithubError:
            self.shutdown()
            raise
        sdnotify.notify("READY=1\nSTATUS=running")
        ping = sdnotify.watchdog_interval_s()
        while not self.stopping.wait(ping or 3600):
            if ping and self._alive():
                sdnotify.notify("WATCHDOG=1")
        return self.shutdown()

    def _alive(self) -> bool:
        """Feed the watchdog only while the scheduler really runs: a wedged hub
        should be restarted by systemd."""
        return bool(self.scheduler and self.scheduler.running)

    def request_stop(self, why: str = "stop requested") -> None:
        if not self.stopping.is_set():
            log.info("%s: finishing in-flight work, then stopping", why)
            self.stopping.set()

    def shutdown(self) -> int:
        self.stopping.set()
        sdnotify.notify("STOPPING=1")
        deadline = time.monotonic() + float(self.config.hub.get("drain_timeout_s", 8))
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)  # no new turns; running ones finish below
        for name, source in self.loaded.sources.items():
            if isinstance(source, PushSource) and not isinstance(source, PollingSource):
                try:
                    source.stop(max(0.5, deadline - time.monotonic()))
                except Exception as exc:
                    log.warning("source %s did not stop cleanly: %s", name, exc)
        # Push sources have stopped publishing; queued live values are stale: drop them.
        self.live.stop(max(0.5, min(2.0, deadline - time.monotonic())))
        with self._inflight_cv:
            drained = self._inflight_cv.wait_for(lambda: self._inflight == 0, timeout=max(0.0, deadline - time.monotonic()))
        if self.http is not None:
            self.http.stop()
        for name, consumer in self.loaded.consumers.items():
            close = getattr(consumer, "close", None)  # e.g. the MQTT notifier says "offline" cleanly
            if callable(close):
                try:
                    close()
                except Exception as exc:
                    log.warning("%s did not close cleanly: %s", name, exc)
        if not drained:
            # Whatever is still running holds at most an uncommitted transaction,
            # which the database discards: exiting now loses nothing.
            log.warning("in-flight work did not finish within the drain timeout; exiting anyway")
            logging.shutdown()
            os._exit(0)
        if self.store is not None:
            self.store.close()
        log.info("fithub stopped")
        return 0


def _outbox_settings(settings: dict[str, Any]) -> dict[str, Any]:
    known = ("retry_base_s", "retry_max_s", "max_attempts", "breaker_failures", "breaker_cooldown_s", "batch")
    return {k: settings[k] for k in known if k in settings}


def _now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


__all__ = ["Daemon", "GROUPS"]
