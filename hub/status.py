"""The hub's state read from the database: what ``/healthz``, ``/metrics`` and
``fithub status`` show. Reading the database (not the daemon's memory) lets the
CLI answer while the daemon runs in another process, and survives restarts."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import sqlalchemy as sa

from hub.storage.schema import (
    ingest_state,
    measurements,
    outbox_deliveries,
    raw_files,
    source_state,
    workouts,
)


@dataclass
class SourceHealth:
    name: str
    kind: str
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    failures: int
    errors_total: int
    items_total: int

    @property
    def ok(self) -> bool:
        return self.failures == 0


@dataclass
class Snapshot:
    taken_at: datetime
    workouts: int
    measurements: int
    files_by_source: dict[str, int] = field(default_factory=dict)
    rejected_by_source: dict[str, int] = field(default_factory=dict)
    outbox_pending: dict[str, int] = field(default_factory=dict)
    outbox_dead: dict[str, int] = field(default_factory=dict)
    sources: list[SourceHealth] = field(default_factory=list)

    def as_json(self) -> dict:
        def stamp(t: datetime | None) -> str | None:
            return t.isoformat().replace("+00:00", "Z") if t else None

        return {
            "taken_at": stamp(self.taken_at),
            "workouts": self.workouts,
            "measurements": self.measurements,
            "files_imported": self.files_by_source,
            "files_rejected": self.rejected_by_source,
            "outbox_pending": self.outbox_pending,
            "outbox_dead": self.outbox_dead,
            "sources": [
                {
                    "name": s.name,
                    "kind": s.kind,
                    "ok": s.ok,
                    "last_attempt_at": stamp(s.last_attempt_at),
                    "last_success_at": stamp(s.last_success_at),
                    "last_error": s.last_error,
                    "consecutive_failures": s.failures,
                    "errors_total": s.errors_total,
                    "items_total": s.items_total,
                }
                for s in self.sources
            ],
        }


def snapshot(engine: sa.Engine) -> Snapshot:
    with engine.connect() as conn:
        count = lambda table: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()  # noqa: E731
        snap = Snapshot(taken_at=datetime.now(timezone.utc), workouts=count(workouts), measurements=count(measurements))
        snap.files_by_source = dict(
            conn.execute(sa.select(raw_files.c.source, sa.func.count()).group_by(raw_files.c.source)).all()
        )
        snap.rejected_by_source = dict(
            conn.execute(
                sa.select(ingest_state.c.source, sa.func.count())
                .where(ingest_state.c.state == "rejected")
                .group_by(ingest_state.c.source)
            ).all()
        )
        for state, target in (("pending", snap.outbox_pending), ("dead", snap.outbox_dead)):
            target.update(
                conn.execute(
                    sa.select(outbox_deliveries.c.consumer, sa.func.count())
                    .where(outbox_deliveries.c.state == state)
                    .group_by(outbox_deliveries.c.consumer)
                ).all()
            )
        snap.sources = [
            SourceHealth(**row) for row in conn.execute(sa.select(source_state).order_by(source_state.c.name)).mappings()
        ]
    return snap


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}" if inner else ""


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus(snap: Snapshot, *, started_at: float | None = None) -> str:
    """The Prometheus text exposition format (version 0.0.4), base units,
    ``_total`` for counters."""
    out: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[dict[str, str], float]]) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            out.append(f"{name}{_labels(**labels)} {value:g}" if isinstance(value, float) else f"{name}{_labels(**labels)} {value}")

    metric("fithub_up", "gauge", "1 while the hub answers.", [({}, 1)])
    if started_at is not None:
        metric("fithub_start_time_seconds", "gauge", "When the daemon started (Unix time).", [({}, float(started_at))])
    metric("fithub_workouts", "gauge", "Workouts stored.", [({}, snap.workouts)])
    metric("fithub_measurements", "gauge", "Measurements stored.", [({}, snap.measurements)])
    metric(
        "fithub_imports_total", "counter", "Files imported, by source.",
        [({"source": s}, n) for s, n in sorted(snap.files_by_source.items())],
    )
    metric(
        "fithub_rejects_total", "counter", "Files rejected (quarantined), by source.",
        [({"source": s}, n) for s, n in sorted(snap.rejected_by_source.items())],
    )
    metric(
        "fithub_outbox_depth", "gauge", "Events waiting for delivery, by consumer.",
        [({"consumer": c}, n) for c, n in sorted(snap.outbox_pending.items())],
    )
    metric(
        "fithub_outbox_dead", "gauge", "Events parked after exhausting their retries, by consumer.",
        [({"consumer": c}, n) for c, n in sorted(snap.outbox_dead.items())],
    )
    metric(
        "fithub_source_errors_total", "counter", "Failed polls or connections, by source.",
        [({"source": s.name}, s.errors_total) for s in snap.sources],
    )
    metric(
        "fithub_source_up", "gauge", "1 when the source's last attempt succeeded.",
        [({"source": s.name}, 1 if s.ok else 0) for s in snap.sources],
    )
    metric(
        "fithub_source_last_success_timestamp_seconds", "gauge", "Last successful poll (Unix time), by source.",
        [({"source": s.name}, float(s.last_success_at.timestamp())) for s in snap.sources if s.last_success_at],
    )
    return "\n".join(out) + "\n"
