"""UTC datetimes as ISO 8601 text, fast: the hot path writes two texts per sample.

``datetime.isoformat`` costs more than everything else a sample needs, and a
stream of samples has many per second, so the text up to the second is built once
per second and cached, and only the microseconds are formatted per call. The
result is exactly ``when.isoformat(sep, timespec="microseconds")`` without the
``+00:00`` (``tests/test_mqtt_profiles.py`` checks it against that).
"""

from __future__ import annotations

from datetime import datetime, timezone

# Samples arrive roughly in time order, so a few thousand seconds cover the
# working set; the cache is emptied when full (the next calls refill it).
_CACHE_MAX = 4096
_bases: dict[tuple[int, int, int, int, int, int, str], str] = {}


def naive_utc_text(when: datetime, sep: str = "T") -> str:
    """``when`` (aware, ``timezone.utc``) as ``YYYY-MM-DD<sep>HH:MM:SS.ffffff``."""
    if when.tzinfo is not timezone.utc:
        raise ValueError(f"expected a datetime in timezone.utc, got {when!r}")
    key = (when.year, when.month, when.day, when.hour, when.minute, when.second, sep)
    base = _bases.get(key)
    if base is None:
        if len(_bases) >= _CACHE_MAX:
            _bases.clear()
        base = _bases[key] = when.replace(microsecond=0, tzinfo=None).isoformat(sep)
    return "%s.%06d" % (base, when.microsecond)
