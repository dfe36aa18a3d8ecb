"""Closing live sessions: quiet devices' samples stored as activities.

A device's session ends once nothing was received from it for ``gap_s``. Its open
rows (cut at silences longer than the gap) each become an activity, stored through
``Store.save_file`` like any imported file, so dedupe merges it with the watch's
FIT file of the same workout. The stored file is the session exported as FIT
(:func:`connectors.export.fit.write_fit`) and the activity is what the FIT decoder
reads back from it, so ``fithub reprocess`` of the raw archive reproduces it.

Effectively once, also across processes and crashes:

- the rows are marked done in the transaction that stores the activity
  (``save_file(also=...)``); when another process marked any of them first, that
  transaction rolls back;
- the FIT bytes depend only on the rows, so a session stored before a crash that
  left its rows open is recognised by its SHA-256 as already present, and its rows
  are then simply closed.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from connectors.export.fit import write_fit
from connectors.files.fit import decode_fit
from hub.errors import DecodeError, FithubError
from hub.model import Provenance

from .live import session_activity, split_sessions
from .storage import LiveRow, LiveStore, SessionTaken


class SessionCloser:
    def __init__(
        self, store, live: LiveStore, *, source: str, gap_s: float, default_person: str,
        keep_done_s: float, log: logging.Logger,
    ) -> None:
        self.store = store
        self.live = live
        self.source = source  # provenance and raw_files.source: "mqtt:<section name>"
        self.gap_s = gap_s
        self.default_person = default_person
        self.keep_done_s = keep_done_s
        self.log = log
        self.stored = 0  # activities this process stored (merged ones included)

    def close_quiet(self, now: datetime | None = None) -> int:
        """Store every session whose device has been quiet for the gap; returns how
        many activities were stored."""
        now = now or datetime.now(timezone.utc)
        stored = 0
        for device in self.live.quiet_devices(now - timedelta(seconds=self.gap_s)):
            rows = self.live.open_rows(device)
            for session in split_sessions(rows, self.gap_s):
                stored += self._close(device, session)
        self.live.prune_done(now - timedelta(seconds=self.keep_done_s))
        return stored

    def _close(self, device: str, rows: list[LiveRow]) -> int:
        ids = [r.id for r in rows]
        if len({r.time for r in rows}) < 2:
            # One instant is no recording; its row is kept (done) for its key.
            self.log.info("MQTT device %s: a session of a single sample at %s was not stored as an activity",
                          device, rows[0].time.isoformat())
            self.live.close_rows(ids)
            return 0
        received_at = max(r.received_at for r in rows)
        built = session_activity(rows, person=self.default_person, source=self.source, received_at=received_at)
        try:
            data = write_fit(built)
        except FithubError as exc:
            self.log.error("MQTT device %s: session from %s not stored: %s", device, built.start.isoformat(), exc)
            return 0
        sha256 = hashlib.sha256(data).hexdigest()
        name = f"live-{_safe(device)}-{built.start.strftime('%Y%m%dT%H%M%SZ')}.fit"
        origin = Provenance(source=self.source, sha256=sha256, received_at=received_at, name=name)
        try:
            decoded = decode_fit(data, origin)
        except DecodeError as exc:  # our own writer's output: a bug, but never a crash
            self.log.error("MQTT device %s: the session's FIT file does not read back: %s", device, exc)
            return 0
        activities = [replace(a, person=built.person, sport=built.sport if a.sport == "generic" else a.sport)
                      for a in decoded.activities]
        try:
            saved = self.store.save_file(
                data=data, sha256=sha256, name=name, fmt="fit", source=self.source, person=built.person,
                received_at=received_at, activities=activities, measurements=[],
                also=lambda conn: self.live.mark_done(conn, ids),
            )
        except SessionTaken:
            self.log.debug("MQTT device %s: session closed by another process", device)
            return 0
        if saved.duplicate:
            self.live.close_rows(ids)
            return 0
        self.stored += 1
        self.log.info(
            "MQTT device %s: live session %s (%d samples, %.0f s) stored as activity %s",
            device, built.start.isoformat(), len(built.samples), built.elapsed_s or 0,
            (saved.activity_ids or saved.merged_ids or ["?"])[0],
            extra={"device": device, "merged": bool(saved.merged_ids)},
        )
        return 1


def _safe(device: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in device)[:64]
