"""Exporters: one activity out as FIT, GPX, TCX, JSON or CSV bytes.

Each exporter is a pure function from an :class:`~hub.model.Activity` to the bytes
of a file; writing them somewhere is the caller's business. :data:`FORMATS`
declares, as data, what each one produces, so the CLI and any web front end can
offer the list, name the file and set the content type without knowing the
formats themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from hub.errors import FithubError
from hub.model import Activity

from .csv_format import write_csv
from .fit import write_fit
from .gpx import write_gpx
from .json_format import activity_to_dict, write_json
from .tcx import write_tcx


@dataclass(frozen=True)
class Exporter:
    name: str
    extension: str  # without the dot
    media_type: str
    write: Callable[[Activity], bytes]


FORMATS: dict[str, Exporter] = {
    e.name: e
    for e in (
        Exporter(name="fit", extension="fit", media_type="application/vnd.ant.fit", write=write_fit),
        Exporter(name="gpx", extension="gpx", media_type="application/gpx+xml", write=write_gpx),
        Exporter(
            name="tcx", extension="tcx", media_type="application/vnd.garmin.tcx+xml", write=write_tcx
        ),
        Exporter(name="json", extension="json", media_type="application/json", write=write_json),
        Exporter(name="csv", extension="csv", media_type="text/csv", write=write_csv),
    )
}


def export(activity: Activity, fmt: str) -> bytes:
    """The bytes of ``activity`` as a ``fmt`` file (a key of :data:`FORMATS`)."""
    exporter = FORMATS.get(fmt.lower())
    if exporter is None:
        known = ", ".join(FORMATS)
        raise FithubError(f"unknown export format {fmt!r}; known formats: {known}")
    return exporter.write(activity)


__all__ = ["FORMATS", "Exporter", "activity_to_dict", "export"]
