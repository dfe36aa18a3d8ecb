"""Recognise FIT, GPX and TCX from their bytes, falling back to the file name.

Content wins over the name: Garmin Connect hands out ``.fit`` downloads that are
really zips, and people rename files. The name only decides when the content is
too damaged to recognise, so that a broken ``.tcx`` still reaches the TCX decoder
and gets a precise error instead of "unknown format".
"""

from __future__ import annotations

import re

_XML_ROOT = re.compile(rb"<(?:[A-Za-z_][\w.-]*:)?(gpx|TrainingCenterDatabase)\b")


def sniff(name: str, data: bytes) -> str | None:
    """Return "fit", "gpx", "tcx" or None."""
    if len(data) >= 12 and data[0] in (12, 14) and data[8:12] == b".FIT":
        return "fit"
    head = data[:4096]
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    match = _XML_ROOT.search(head)
    if match:
        return "gpx" if match.group(1) == b"gpx" else "tcx"
    lower = name.lower()
    if lower.endswith(".gz"):
        lower = lower[:-3]
    for fmt in ("fit", "gpx", "tcx"):
        if lower.endswith("." + fmt):
            return fmt
    return None
