"""Activity files: FIT, GPX and TCX decoders (pure: bytes in, model out)."""

from __future__ import annotations

from collections.abc import Callable

from hub.model import Decoded, Provenance

from .sniff import sniff

Decoder = Callable[[bytes, Provenance], Decoded]


def decoders() -> dict[str, Decoder]:
    """The built-in decoders by format name."""
    from .fit import decode_fit
    from .gpx import decode_gpx
    from .tcx import decode_tcx

    return {"fit": decode_fit, "gpx": decode_gpx, "tcx": decode_tcx}


__all__ = ["Decoder", "decoders", "sniff"]
