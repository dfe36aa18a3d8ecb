"""Garmin Connect web-API activity JSON -> activities (a :class:`FileDecoder`).

Accepted shapes (what tools like garmin-connect-export save):

* one activity's detail (``{"activityId", "summaryDTO", "activityTypeDTO", ...}``);
* one activity's overview or a list of them (``[{"activityId", "startTimeGMT",
  "activityType", ...}, ...]``).

A multisport *parent* only sums up its children (which are activities of their
own), so it is skipped with a warning rather than stored as a second copy of the
same hours. Other Connect JSON (samples, HR zones, devices, user stats) holds no
activity summary and is reported as such.
"""

from __future__ import annotations

import json
from typing import Any

from hub.errors import DecodeError
from hub.model import Decoded, Provenance

from .connect_summary import SummaryError, from_api, is_multisport_parent

FORMAT = "garmin_json"


def sniff(name: str, head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")[:65536]
    if not text.startswith((b"{", b"[")) or b'"activityId"' not in text:
        return False
    return any(key in text for key in (b'"summaryDTO"', b'"startTimeGMT"', b'"activityTypeDTO"'))


def decode(data: bytes, origin: Provenance) -> Decoded:
    name = origin.name or "Garmin Connect JSON"
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DecodeError(name, f"not UTF-8 text: {exc.reason}", where=f"byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise DecodeError(name, f"invalid JSON: {exc.msg}", where=f"line {exc.lineno} column {exc.colno}") from exc
    entries = _entries(doc)
    if not entries:
        return Decoded(not_activity="Garmin Connect JSON without an activity summary (samples, zones, device or stats?)")
    activities, warnings = [], []
    for index, entry in entries:
        where = f"entry {index} (activity {entry.get('activityId')})"
        if is_multisport_parent(entry):
            warnings.append(f"{where}: multisport parent skipped; its parts are activities of their own")
            continue
        try:
            activities.append(from_api(entry, origin))
        except SummaryError as exc:
            warnings.append(f"{where}: skipped: {exc}")
    if not activities:
        reason = "; ".join(warnings) or "no usable activity"
        return Decoded(not_activity=f"Garmin Connect JSON holds no storable activity: {reason}", warnings=warnings)
    return Decoded(activities=activities, warnings=warnings)


def _entries(doc: Any) -> list[tuple[int, dict]]:
    items = doc if isinstance(doc, list) else [doc]
    return [
        (i, item)
        for i, item in enumerate(items)
        if isinstance(item, dict)
        and "activityId" in item
        and (isinstance(item.get("summaryDTO"), dict) or "startTimeGMT" in item)
    ]


class ConnectJson:
    """The ``garmin_json`` decoder plugin."""

    format = FORMAT

    def sniff(self, name: str, head: bytes) -> bool:
        return sniff(name, head)

    def decode(self, data: bytes, origin: Provenance) -> Decoded:
        return decode(data, origin)
