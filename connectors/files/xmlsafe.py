"""Hardened XML reading shared by the GPX and TCX decoders.

Activity XML comes from devices, apps and websites, so it is untrusted: the parser
refuses entity declarations (billion-laughs style expansion bombs) and external
references, and every failure becomes one :class:`DecodeError` that names the file
and, when the parser knows it, the line and column.

Bytes are turned into text here rather than by the parser so that a UTF-8 or UTF-16
byte-order mark, a declared legacy encoding and stray whitespace before the XML
declaration (all seen in real exports) are handled once, for both formats.
"""

from __future__ import annotations

import codecs
import math
import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from hub.errors import DecodeError

_ENCODING_DECL = re.compile(rb"""^<\?xml[^>]{0,200}?encoding\s*=\s*["']([A-Za-z0-9._:-]{1,40})["']""")
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


# Real GPX and TCX nest about a dozen levels deep. Far deeper trees are refused:
# copying one (gpxpy deep-copies every <extensions> child) recurses in C and can
# crash the interpreter instead of raising.
MAX_DEPTH = 100


class _TooDeep(ValueError):
    pass


class _DepthLimitedBuilder(ET.TreeBuilder):
    def __init__(self) -> None:
        super().__init__()
        self._depth = 0

    def start(self, tag, attrs):  # type: ignore[no-untyped-def]
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _TooDeep(f"elements nest deeper than {MAX_DEPTH} levels")
        return super().start(tag, attrs)

    def end(self, tag):  # type: ignore[no-untyped-def]
        self._depth -= 1
        return super().end(tag)


def to_text(data: bytes, name: str | None) -> tuple[str, str]:
    """Decode ``data`` to text ready for the parser.

    Returns the text and what was removed from its front, so parser positions can be
    reported against the original file. The encoding comes from a byte-order mark,
    else the XML declaration, else UTF-8 (the XML default).
    """
    encoding = "utf-8"
    for bom, codec in _BOMS:
        if data.startswith(bom):
            encoding = codec
            break
    else:
        match = _ENCODING_DECL.match(data.lstrip(b" \t\r\n"))
        if match:
            encoding = match.group(1).decode("ascii")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DecodeError(name, f"text is not valid {encoding}: {exc.reason}", f"byte {exc.start}") from exc
    except LookupError:  # unknown, or not a text encoding at all (e.g. "zlib")
        raise DecodeError(name, f"the XML declaration names an unknown encoding {encoding!r}") from None
    # The XML declaration must be the very first thing a parser sees; some writers
    # put a newline (or a second BOM) before it.
    stripped = text.lstrip(" \t\r\n\ufeff")
    return stripped, text[: len(text) - len(stripped)]


def parse(data: bytes, name: str | None) -> ET.Element:
    """Parse untrusted XML into an element tree, refusing entities and external references."""
    text, skipped = to_text(data, name)
    parser = DefusedXMLParser(target=_DepthLimitedBuilder())
    try:
        parser.feed(text)
        root = parser.close()
    except _TooDeep as exc:
        raise DecodeError(name, f"{exc}, refused", _position(parser, skipped)) from exc
    except DefusedXmlException as exc:
        raise DecodeError(
            name,
            f"XML declares entities or external references, which are refused ({exc})",
            _position(parser, skipped),
        ) from exc
    except ET.ParseError as exc:
        line, column = exc.position
        raise DecodeError(name, f"not well-formed XML: {_reason(exc)}", _where(line, column, skipped)) from exc
    return root


def _reason(exc: ET.ParseError) -> str:
    # expat appends its own ": line L, column C"; the position goes into `where`.
    return re.sub(r":\s*line \d+, column \d+$", "", str(exc))


def _where(line: int, column: int, skipped: str) -> str:
    """Map a parser position back to the original file (before ``skipped`` was cut off)."""
    if line == 1:
        column += len(skipped) - (skipped.rfind("\n") + 1)
    line += skipped.count("\n")
    # expat counts columns from 0; editors (and users) count from 1.
    return f"line {line}, column {column + 1}"


def _position(parser: DefusedXMLParser, skipped: str) -> str | None:
    expat = getattr(parser, "parser", None)
    if expat is None:
        return None
    return _where(expat.CurrentLineNumber, expat.CurrentColumnNumber, skipped)


def local(tag: object) -> str:
    """The local part of a ``{namespace}name`` tag; namespaces vary between writers."""
    if not isinstance(tag, str):
        return ""
    return tag.rpartition("}")[2].rpartition(":")[2]


def number(text: str | None) -> float | None:
    """A finite float from element text, or None for missing or unreadable values."""
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_time(text: str | None) -> datetime | None:
    """An aware UTC datetime from an xsd:dateTime, or None when unreadable.

    A time without offset is UTC: both GPX and TCX define their times as UTC.
    """
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.strip())
        if value.tzinfo is None or value.utcoffset() is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None


# Satellite positioning has no times before the GPS epoch; earlier values are
# placeholders such as 1901-12-13T20:45:52Z (the most negative 32-bit Unix time).
GPS_EPOCH = datetime(1980, 1, 6, tzinfo=timezone.utc)


def plausible(value: datetime | None) -> bool:
    """False for missing times and for placeholders from before the GPS epoch."""
    return value is not None and value >= GPS_EPOCH


def as_utc(value: datetime | None) -> datetime | None:
    """Normalise a datetime another parser produced; naive means UTC."""
    if value is None:
        return None
    try:
        if value.tzinfo is None or value.utcoffset() is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        return None


__all__ = ["GPS_EPOCH", "MAX_DEPTH", "as_utc", "local", "number", "parse", "parse_time", "plausible", "to_text"]
