"""Activity files: FIT, GPX and TCX decoders (pure: bytes in, model out)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hub.model import Decoded, Provenance

from .sniff import sniff

Decoder = Callable[[bytes, Provenance], Decoded]


def decoders() -> dict[str, Decoder]:
    """The built-in decoders by format name."""
    from .fit import decode_fit
    from .gpx import decode_gpx
    from .tcx import decode_tcx

    return {"fit": decode_fit, "gpx": decode_gpx, "tcx": decode_tcx}


@dataclass(frozen=True)
class BuiltinDecoder:
    """A built-in format as a :class:`hub.plugins.FileDecoder` (the entry points
    ``fit``, ``gpx`` and ``tcx`` of ``fithub.decoders``)."""

    format: str

    def sniff(self, name: str, head: bytes) -> bool:
        return sniff(name, head) == self.format

    def decode(self, data: bytes, origin: Provenance) -> Decoded:
        return decoders()[self.format](data, origin)


FIT = BuiltinDecoder("fit")
GPX = BuiltinDecoder("gpx")
TCX = BuiltinDecoder("tcx")

__all__ = ["FIT", "GPX", "TCX", "BuiltinDecoder", "Decoder", "decoders", "sniff"]
