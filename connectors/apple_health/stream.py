"""Streaming parse of ``export.xml``: constant memory, hostile input refused.

The bytes pass through two filters before expat sees them:

* The internal DTD subset at the top is cut out (replaced by as many newlines, so
  parser line numbers stay true). iOS 16 ships a malformed one ("syntax error" on an
  unterminated ATTLIST) and fithub needs nothing from it. If it declares entities
  the import is refused: that is an expansion (billion laughs) or external-entity
  attack, never part of a real export. With no DTD left, any entity reference other
  than the five predefined ones is an error, and expat is told to refuse external
  and parameter entities too.
* Control characters that XML forbids (real exports carry stray ``\\x0b`` in
  third-party strings) are deleted. In UTF-8 these byte values never occur inside a
  multi-byte sequence, so deleting them byte-wise is safe.

expat (through the stdlib) is used directly with start/end callbacks: it streams with
no tree at all, and was faster here than lxml's iterparse with element clearing.
"""

from __future__ import annotations

import json
import pyexpat
import re
from collections.abc import Callable
from typing import BinaryIO

from hub.errors import DecodeError

_FORBIDDEN = bytes(range(0, 9)) + b"\x0b\x0c" + bytes(range(0x0E, 0x20))
_DOCTYPE = re.compile(rb"<!DOCTYPE\s")
_SUBSET_END = re.compile(rb"\]\s*>")
MAX_HEAD = 4 * 1024 * 1024  # a DTD is a few KB; more means this is not an export


def strip_doctype(head: bytes, name: str) -> tuple[bytes, bool]:
    """Cut the DOCTYPE (and its internal subset) out of the first bytes.

    Returns (bytes, complete): complete is False when the DOCTYPE has not ended yet
    and more bytes are needed.
    """
    first_element = re.search(rb"<[A-Za-z_]", head)
    match = _DOCTYPE.search(head)
    if match is None or (first_element is not None and first_element.start() < match.start()):
        return head, first_element is not None or len(head) > MAX_HEAD
    start = match.start()
    bracket, close = head.find(b"[", start), head.find(b">", start)
    if close == -1:
        return head, _too_long(head, name)
    if bracket == -1 or close < bracket:  # <!DOCTYPE x SYSTEM "..."> without a subset
        end = close + 1
        subset = head[start:end]
    else:
        tail = _SUBSET_END.search(head, bracket)
        if tail is None:
            return head, _too_long(head, name)
        end = tail.end()
        subset = head[start:end]
    if b"<!ENTITY" in subset:
        raise DecodeError(name, "the document declares XML entities (<!ENTITY>), which are refused: "
                                "an entity-expansion or external-entity attack, not an Apple Health export",
                          "line %d" % (head.count(b"\n", 0, start) + 1))
    declaration = head[start:bracket if bracket != -1 and bracket < close else close]
    if b"SYSTEM" in declaration or b"PUBLIC" in declaration:
        raise DecodeError(name, "the document references an external DTD, which is refused")
    return head[:start] + b"\n" * subset.count(b"\n") + head[end:], True


def _too_long(head: bytes, name: str) -> bool:
    if len(head) > MAX_HEAD:
        raise DecodeError(name, f"the DOCTYPE does not end within the first {MAX_HEAD} bytes")
    return False


class Handler:
    """Receives the export's top-level elements from :func:`parse_stream`.

    ``record(attrs, meta, beats)`` for each top-level Record; ``correlation(attrs, meta,
    children)``; ``workout(tree)`` with the Workout subtree as ``[tag, attrs, children]``;
    ``summary(attrs)`` for ActivitySummary; ``export_date(value)``; ``other(tag)`` for
    anything else at the top level (kept as a count).
    """

    def record(self, attrs: dict, meta: dict | None, beats: list | None) -> None: ...
    def correlation(self, attrs: dict, meta: dict | None, children: list) -> None: ...
    def workout(self, tree: list) -> None: ...
    def summary(self, attrs: dict) -> None: ...
    def export_date(self, value: str, locale: str | None) -> None: ...
    def other(self, tag: str) -> None: ...


def parse_stream(stream: BinaryIO, handler: Handler, name: str, after_chunk: Callable[[], None] | None = None) -> int:
    """Feed ``stream`` through the filters into expat, calling ``handler``; returns bytes read.

    ``after_chunk`` runs after each chunk was parsed (the caller flushes batches and
    reports progress there, outside expat's callbacks).
    """
    parser = pyexpat.ParserCreate()
    parser.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)

    def refuse_entity(*_args):
        raise DecodeError(name, "the document declares XML entities, which are refused")

    parser.EntityDeclHandler = refuse_entity
    parser.ExternalEntityRefHandler = lambda *a: 0  # 0 = error: never fetch anything
    parser.StartDoctypeDeclHandler = lambda *a: refuse_entity()  # a DOCTYPE after the head

    state = _State(handler)
    parser.StartElementHandler = state.start
    parser.EndElementHandler = state.end
    total = 0
    head = b""
    started = False
    try:
        while True:
            chunk = stream.read(1 << 20)
            total += len(chunk)
            if chunk:
                chunk = chunk.translate(None, _FORBIDDEN)
            if not started:
                head += chunk
                stripped, complete = strip_doctype(head, name)
                if not complete and chunk:
                    continue
                started, chunk = True, stripped
            parser.Parse(chunk, not chunk)
            if after_chunk is not None:
                after_chunk()
            if not chunk:
                break
    except pyexpat.ExpatError as exc:
        why = pyexpat.ErrorString(exc.code)
        if "undefined entity" in why:
            why += " (entity references are refused)"
        raise DecodeError(name, f"not well-formed XML: {why}", f"line {exc.lineno}, column {exc.offset + 1}") from exc
    if state.depth != 0:
        raise DecodeError(name, "the XML ends before </HealthData>: the export is truncated")
    return total


class _State:
    """The element state machine; deliberately flat, it runs for every element."""

    __slots__ = ("h", "depth", "attrs", "meta", "beats", "kind", "children", "stack")

    def __init__(self, handler: Handler) -> None:
        self.h = handler
        self.depth = 0
        self.attrs: dict | None = None
        self.meta: dict | None = None
        self.beats: list | None = None
        self.kind = ""
        self.children: list = []
        self.stack: list = []

    def start(self, tag: str, attrs: dict) -> None:
        self.depth += 1
        depth = self.depth
        if depth == 2:
            self.kind = tag
            if tag == "Record" or tag == "Correlation":
                self.attrs, self.meta, self.beats, self.children = attrs, None, None, []
            elif tag == "Workout":
                node = [tag, attrs, []]
                self.stack = [node]
            elif tag == "ActivitySummary":
                self.h.summary(attrs)
            elif tag == "ExportDate":
                self.h.export_date(attrs.get("value", ""), None)
            elif tag != "Me":
                self.h.other(tag)
            return
        if depth == 1:
            if tag != "HealthData":
                raise DecodeError(None, f"root element is <{tag}>, not <HealthData>: not an Apple Health export")
            self.h.export_date("", attrs.get("locale"))
            return
        kind = self.kind
        if kind == "Record":
            if tag == "MetadataEntry" and depth == 3:
                if self.meta is None:
                    self.meta = {}
                self.meta[attrs.get("key", "")] = attrs.get("value", "")
            elif tag == "InstantaneousBeatsPerMinute":
                if self.beats is None:
                    self.beats = []
                self.beats.append((attrs.get("bpm"), attrs.get("time")))
        elif kind == "Workout":
            node = [tag, attrs, []]
            self.stack[-1][2].append(node)
            self.stack.append(node)
        elif kind == "Correlation":
            if tag == "MetadataEntry" and depth == 3:
                if self.meta is None:
                    self.meta = {}
                self.meta[attrs.get("key", "")] = attrs.get("value", "")
            elif tag == "Record" and depth == 3:
                self.children.append(attrs)

    def end(self, tag: str) -> None:
        depth = self.depth
        self.depth = depth - 1
        if depth == 2:
            if tag == "Record":
                self.h.record(self.attrs, self.meta, self.beats)
            elif tag == "Correlation":
                self.h.correlation(self.attrs, self.meta, self.children)
            elif tag == "Workout":
                self.h.workout(self.stack[0])
                self.stack = []
            self.kind = ""
        elif depth > 2 and self.kind == "Workout":
            self.stack.pop()


def tree_json(tree: list) -> str:
    """A workout subtree as one line of JSON (for spooling)."""
    return json.dumps(tree, ensure_ascii=False, separators=(",", ":"))


__all__ = ["Handler", "parse_stream", "strip_doctype", "tree_json"]
