"""Garmin: a watch mounted over USB, the Connect account export, Connect JSON.

Entry points (``pyproject.toml``): the source ``garmin_usb``
(:class:`connectors.garmin.usb.GarminUsb`), the decoders ``garmin_json``
(:data:`CONNECT_JSON`) and ``garmin_connect_export`` (:data:`CONNECT_EXPORT`).
:data:`MONITORING` and :data:`SLEEP` decode the watch's ``Monitor/`` and ``Sleep/``
FIT files and :data:`SUMMARY` the export's stored summary entries (for
``reprocess``); :func:`connectors.garmin.formats.decoders` bundles them with the
activity-file decoders.
"""

from __future__ import annotations

# Built on first use, so loading the package (or one entry point) stays cheap.
_BUILDERS = {
    "CONNECT_JSON": ("connect_json", "ConnectJson"),
    "CONNECT_EXPORT": ("connect_export", "ConnectExport"),
    "MONITORING": ("monitoring", "MonitoringDecoder"),
    "SLEEP": ("sleep", "SleepDecoder"),
    "SUMMARY": ("connect_export", "SummaryDecoder"),
}


def __getattr__(name: str):
    if name not in _BUILDERS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    module, cls = _BUILDERS[name]
    value = getattr(import_module(f"{__name__}.{module}"), cls)()
    globals()[name] = value
    return value


__all__ = ["CONNECT_EXPORT", "CONNECT_JSON", "MONITORING", "SLEEP", "SUMMARY"]
