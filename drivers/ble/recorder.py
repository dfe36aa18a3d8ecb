"""From readings to stored data: sessions become activities, weighings measurements.

Everything is stored as a file through the normal import pipeline (``save`` is
``hub.import_bytes`` in the daemon, :func:`pipeline_saver` in the CLI): a session
as the FIT file :func:`connectors.export.fit.write_fit` makes of it, a weighing as
a FIT weight file. So a BLE session is archived, deduplicated and merged with the
watch's recording of the same workout like any other file, exports as FIT, and
``fithub reprocess`` rebuilds it.

If storing fails (the database is unreachable), the file goes to a spool folder
and is imported from there on the next attempt: a finished workout is never lost
to a database outage.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from connectors.export.fit import write_fit
from hub.pipeline import Duplicate, Imported, Rejected

from .readings import Reading, ScaleReading
from .scale import PersonRule, attribute, weight_fit
from .session import DEFAULT_IDLE_GAP_S, DEFAULT_MIN_DURATION_S, Recording, SessionResult, SessionTracker, to_activity

log = logging.getLogger("fithub.ble")

# save(data, *, name, source, person) -> hub.pipeline Outcome
Save = Callable[..., Any]


def pipeline_saver(store) -> Save:
    """A ``save`` for use outside the daemon (the CLI): the same pipeline, same decoders."""
    from hub.decoding import registry
    from hub.pipeline import ingest

    reg = registry()

    def save(data: bytes, *, name: str, source: str, person: str):
        return ingest(store, data, name=name, decoders=reg.decoders, sniff=reg.sniff, person=person, source=source)

    return save


@dataclass
class Live:
    """The latest value of each channel and which sensor sent it (the live line)."""

    values: dict[str, tuple[float, str, float]] = field(default_factory=dict)  # channel -> (value, sensor, time)

    def update(self, reading: Reading) -> None:
        for channel, value in reading.channels.items():
            self.values[channel] = (value, reading.sensor, reading.time_s)

    def line(self, now_s: float, stale_s: float = 5.0) -> str:
        units = {"hr_bpm": "bpm", "power_w": "W", "cadence_rpm": "rpm", "speed_mps": "m/s", "distance_m": "m"}
        parts = []
        for channel, unit in units.items():
            if channel in self.values:
                value, _, at = self.values[channel]
                parts.append(f"{value:.0f} {unit}" if now_s - at <= stale_s else f"-- {unit}")
        return "  ".join(parts) or "waiting for sensors..."


class Recorder:
    def __init__(
        self,
        save: Save,
        *,
        person: str,
        idle_gap_s: float = DEFAULT_IDLE_GAP_S,
        min_duration_s: float = DEFAULT_MIN_DURATION_S,
        persons: list[PersonRule] | None = None,
        spool: Path | None = None,
        on_stored: Callable[[str, Any], None] | None = None,
    ) -> None:
        self.save = save
        self.person = person
        self.tracker = SessionTracker(idle_gap_s, min_duration_s)
        self.persons = persons or []
        self.spool = spool
        self.on_stored = on_stored
        self.live = Live()
        self.results: list[tuple[SessionResult, Any]] = []  # what was stored, for reports and tests
        self.weighings: list[tuple[ScaleReading, str, Any]] = []

    # -- fed by the manager (event loop; quick) ----------------------------------

    def reading(self, reading: Reading) -> Recording | None:
        """A finished recording when this reading ended one (store it off the loop)."""
        self.live.update(reading)
        return self.tracker.add(reading)

    def tick(self, now_s: float) -> Recording | None:
        return self.tracker.tick(now_s)

    # -- storing (blocking; run in a worker thread) ------------------------------

    def store_recording(self, recording: Recording) -> SessionResult:
        result = to_activity(recording, person=self.person)
        start = result.activity.start
        name = f"ble-{start:%Y%m%dT%H%M%SZ}.fit"
        outcome = self._save(write_fit(result.activity), name=name, source=result.source, person=self.person)
        channels = ", ".join(f"{ch} from {addr} ({result.combined.profiles[ch]})" for ch, addr in result.combined.sources.items())
        log.info("BLE session %s stored (%s, %.0f s): %s; %s", name, result.activity.sport, result.activity.elapsed_s or 0,
                 _describe(outcome), channels or "no channels")
        self.results.append((result, outcome))
        if self.on_stored:
            self.on_stored(name, outcome)
        return result

    def store_weighing(self, reading: ScaleReading) -> Any:
        person, how = attribute(reading, self.persons, self.person)
        name = f"ble-scale-{reading.time:%Y%m%dT%H%M%SZ}.fit"
        outcome = self._save(weight_fit(reading), name=name, source="ble:scale", person=person)
        log.info("BLE weighing %s from %s for %s (%s): %s", name, reading.sensor, person, how, _describe(outcome))
        self.weighings.append((reading, person, outcome))
        if self.on_stored:
            self.on_stored(name, outcome)
        return outcome

    def _save(self, data: bytes, *, name: str, source: str, person: str) -> Any:
        try:
            return self.save(data, name=name, source=source, person=person)
        except Exception as exc:  # the database is down: keep the file, retry later
            if self.spool is None:
                raise
            self.spool.mkdir(parents=True, exist_ok=True)
            (self.spool / name).write_bytes(data)
            (self.spool / f"{name}.json").write_text(json.dumps({"source": source, "person": person}))
            log.error("BLE file %s not stored (%s: %s); kept in %s for the next attempt", name, type(exc).__name__, exc, self.spool)
            return None

    def retry_spool(self) -> int:
        """Import what an earlier failure left in the spool; returns how many went in."""
        if self.spool is None or not self.spool.is_dir():
            return 0
        done = 0
        for meta in sorted(self.spool.glob("*.fit.json")):
            path = meta.with_suffix("")
            if not path.exists():
                meta.unlink()
                continue
            info = json.loads(meta.read_text())
            try:
                outcome = self.save(path.read_bytes(), name=path.name, source=info["source"], person=info["person"])
            except Exception as exc:
                log.info("BLE spool: %s still not stored: %s", path.name, exc)
                return done
            if isinstance(outcome, Rejected):  # cannot happen for our own files; keep it for a human
                log.error("BLE spool: %s rejected: %s; left in %s", path.name, outcome.reason, self.spool)
                continue
            path.unlink()
            meta.unlink()
            done += 1
        return done


def _describe(outcome: Any) -> str:
    if isinstance(outcome, Imported):
        if outcome.merged_only:
            return f"merged into activity {', '.join(map(str, outcome.merged_ids))}"
        if outcome.activity_ids:
            return f"activity {', '.join(map(str, outcome.activity_ids))}"
        return f"{outcome.measurements} measurements"
    if isinstance(outcome, Duplicate):
        return "already stored"
    if isinstance(outcome, Rejected):
        return f"rejected: {outcome.reason}"
    return "spooled"
