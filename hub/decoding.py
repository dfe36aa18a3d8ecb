"""The decoders the pipeline uses: the built-in formats plus installed plugins.

Built-in sniffing runs first (it knows FIT/GPX/TCX by content); a plugin decoder
is asked only for bytes the built-ins do not recognise, so a plugin cannot take
over a format by accident. The exception is a decoder that declares
``refines = "fit"`` (say): it specialises a built-in format (Garmin monitoring
and sleep files are FIT files) and is asked first about bytes the built-in
sniffer calls that format. Stream importers (whole exports) are kept apart: they
get a path, not bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from connectors.files import decoders as builtin_decoders
from connectors.files import sniff as builtin_sniff

from .plugins import FileDecoder, StreamImporter, discover

log = logging.getLogger("fithub.decoding")


@dataclass
class Registry:
    decoders: dict[str, Callable] = field(default_factory=dict)
    plugin_sniffers: list[FileDecoder] = field(default_factory=list)
    refiners: dict[str, list[FileDecoder]] = field(default_factory=dict)
    streams: list[StreamImporter] = field(default_factory=list)

    def sniff(self, name: str, data: bytes) -> str | None:
        found = builtin_sniff(name, data)
        head = data[:65536]
        if found is not None:
            return self._first(self.refiners.get(found, []), name, head) or found
        return self._first(self.plugin_sniffers, name, head)

    @staticmethod
    def _first(plugins: list[FileDecoder], name: str, head: bytes) -> str | None:
        for plugin in plugins:
            try:
                if plugin.sniff(name, head):
                    return plugin.format
            except Exception as exc:  # a faulty plugin must not stop the import
                log.warning("decoder plugin %s failed to sniff %s: %s", plugin.format, name, exc)
        return None


def registry(*, plugins: bool = True) -> Registry:
    reg = Registry(decoders=dict(builtin_decoders()))
    if not plugins:
        return reg
    for name, info in discover("decoders").items():
        obj = info.loaded
        if obj is None or name in reg.decoders:
            continue
        if isinstance(obj, StreamImporter):
            reg.streams.append(obj)
        elif isinstance(obj, FileDecoder):
            reg.decoders[obj.format] = obj.decode
            refines = getattr(obj, "refines", None)
            if refines:
                reg.refiners.setdefault(refines, []).append(obj)
            else:
                reg.plugin_sniffers.append(obj)
        else:
            log.warning("decoder plugin %s (%s) is neither a FileDecoder nor a StreamImporter; skipped", name, info.value)
    return reg
