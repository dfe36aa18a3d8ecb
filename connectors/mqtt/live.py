"""Live sessions: a device's samples grouped into workouts (pure functions).

A session is a run of one device's samples with no silence longer than the
configured gap between two of them (by the samples' own times). It becomes an
:class:`~hub.model.Activity` with the samples as received (one row per distinct
time; two readings for the same instant are merged channel by channel) and the
summary derived from them by :func:`hub.derive.fill_summary`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from hub.derive import fill_summary
from hub.model import CHANNELS, Activity, Device, Provenance, SampleStream

from .storage import LiveRow


def split_sessions(rows: Sequence[LiveRow], gap_s: float) -> list[list[LiveRow]]:
    """``rows`` (one device, any order) cut wherever two consecutive sample times
    are more than ``gap_s`` apart."""
    ordered = sorted(rows, key=lambda r: (r.time, r.id))
    sessions: list[list[LiveRow]] = []
    for row in ordered:
        if sessions and (row.time - sessions[-1][-1].time).total_seconds() <= gap_s:
            sessions[-1].append(row)
        else:
            sessions.append([row])
    return sessions


def session_stream(rows: Sequence[LiveRow]) -> tuple[datetime, SampleStream]:
    """The start time and the columnar stream of one session's rows (time-ordered).

    Standard channels come first in model order, others by name; a channel a
    sample did not carry is a gap (``None``), never zero.
    """
    merged: dict[datetime, dict[str, float]] = {}
    for row in rows:
        merged.setdefault(row.time, {}).update(row.channels)
    times = sorted(merged)
    start = times[0]
    present = {name for values in merged.values() for name in values}
    names = [c for c in CHANNELS if c in present] + sorted(present - set(CHANNELS))
    columns = {name: [merged[t].get(name) for t in times] for name in names}
    offsets = [(t - start).total_seconds() for t in times]
    return start, SampleStream(offsets_s=offsets, columns=columns)


def session_activity(
    rows: Sequence[LiveRow], *, person: str, source: str, received_at: datetime
) -> Activity:
    """One finished session as an activity. Person and sport: the first the rows
    name (the payload or the device map said so), else ``person`` / "generic"."""
    start, stream = session_stream(rows)
    device = rows[0].device
    activity = Activity(
        person=next((r.person for r in rows if r.person), person),
        sport=next((r.sport for r in rows if r.sport), "generic"),
        start=start,
        elapsed_s=stream.offsets_s[-1] if stream.offsets_s else 0.0,
        device=Device(product=device),
        samples=stream,
        provenance=Provenance(source=source, sha256=None, received_at=received_at, name=device),
    )
    return fill_summary(activity)
