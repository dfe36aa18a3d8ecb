"""Apple Health export import (``export.zip``, ``export.xml`` or the unzipped folder).

``IMPORTER`` is the :class:`hub.plugins.StreamImporter` registered as the
``apple_health`` entry point of ``fithub.decoders``. ``decode_workout`` reads back the
per-workout blobs it stores (format ``apple_health_workout``), for reprocessing.
"""

from __future__ import annotations

from .importer import IMPORTER, AppleHealthImporter
from .workouts import FORMAT as WORKOUT_FORMAT
from .workouts import decode_workout


class WorkoutDecoder:
    """:class:`hub.plugins.FileDecoder` for the stored per-workout blobs (entry point
    ``apple_health_workout``), so ``fithub reprocess`` can rebuild Apple workouts. It
    never claims bytes by sniffing: only the export importer writes this format."""

    format = WORKOUT_FORMAT

    def sniff(self, name: str, head: bytes) -> bool:
        return False

    def decode(self, data, origin):
        return decode_workout(data, origin)


WORKOUT = WorkoutDecoder()

__all__ = ["IMPORTER", "WORKOUT", "WORKOUT_FORMAT", "AppleHealthImporter", "decode_workout"]
