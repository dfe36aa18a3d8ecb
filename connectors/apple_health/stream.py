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

libxml2 (through lxml's parser-target interface) is used with start/end callbacks: it
streams with no tree at all; it was faster here than expat's callbacks and than
lxml's iterparse with element clearing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import BinaryIO

from lxml import etree

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
    """Feed ``stream`` through the filters into the XML parser, calling ``handler``; returns bytes read.

    ``after_chunk`` runs after each chunk was parsed (the caller flushes batches and
    reports progress there, outside the parser's callbacks).
    """
    state = _State(handler)
    # libxml2 through lxml's parser-target interface: no tree, only the callbacks, and
    # a fifth cheaper per element than expat's. No DTD is loaded and nothing is fetched;
    # with the DOCTYPE cut out no entity can be declared, so "internal" resolves only
    # the predefined ones (&amp; ...), and any other reference is an error. (With
    # resolve_entities=False libxml2 would hand "&amp;" over as "&#38;".)
    parser = etree.XMLParser(target=state, resolve_entities="internal", no_network=True, load_dtd=False,
                             dtd_validation=False, huge_tree=False, remove_comments=True, remove_pis=True)
    total = 0
    head = b""
    started = closing = False
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
            if not chunk:
                break
            parser.feed(chunk)
            if after_chunk is not None:
                after_chunk()
        closing = True
        parser.close()
    except etree.XMLSyntaxError as exc:
        why = exc.msg.split(", line ")[0]
        if closing and state.depth != 0:  # all of it was well-formed, it just stops
            raise DecodeError(name, "the XML ends before </HealthData>: the export is truncated") from exc
        if "Entity" in why and "not defined" in why:
            why = f"undefined entity: {why} (entity references are refused)"
        line, column = exc.position if exc.position else (exc.lineno, 0)
        raise DecodeError(name, f"not well-formed XML: {why}", f"line {line}, column {column}") from exc
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
                node = [tag, dict(attrs), []]  # dict: lxml passes an element without attributes a mapping
                self.stack = [node]
            elif tag == "ActivitySummary":
                self.h.summary(dict(attrs))
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
            node = [tag, dict(attrs), []]
            self.stack[-1][2].append(node)
            self.stack.append(node)
        elif kind == "Correlation":
            if tag == "MetadataEntry" and depth == 3:
                if self.meta is None:
                    self.meta = {}
                self.meta[attrs.get("key", "")] = attrs.get("value", "")
            elif tag == "Record" and depth == 3:
                self.children.append(attrs)

    def close(self) -> None:
        """The parser target's end of document (the checks follow in parse_stream)."""

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
