"""The decoders and the sniffer the Garmin sources import files with.

A watch's ``Monitor/`` and ``Sleep/`` folders hold FIT files that the activity
decoder rightly calls "not an activity"; they get their own formats here, so the
raw archive records what they are and ``reprocess`` can find the decoder again.
Everything else is handed to the file decoders (:mod:`connectors.files`).
"""

from __future__ import annotations

from connectors.files import Decoder
from connectors.files import decoders as file_decoders
from connectors.files import sniff as file_sniff

from .monitoring import FORMAT as MONITORING, decode_monitoring, is_monitoring
from .sleep import FORMAT as SLEEP, decode_sleep, is_sleep


def decoders() -> dict[str, Decoder]:
    """The file decoders plus Garmin monitoring, sleep and export summary entries."""
    from .connect_export import SUMMARY_FORMAT, decode_summary

    return {**file_decoders(), MONITORING: decode_monitoring, SLEEP: decode_sleep, SUMMARY_FORMAT: decode_summary}


def sniff(name: str, data: bytes) -> str | None:
    fmt = file_sniff(name, data)
    if fmt == "fit":
        if is_monitoring(data):
            return MONITORING
        if is_sleep(data):
            return SLEEP
    return fmt
