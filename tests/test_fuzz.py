"""Mutation fuzzing of the decoders with the real corpus.

Every mutant must either decode (possibly with warnings) or raise one DecodeError that
names the file; any other exception, or a decode that runs away, fails the test.
The seed is fixed so a failure reproduces; FITHUB_FUZZ_MUTANTS scales the run.
"""

from __future__ import annotations

import os
import random
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.files import decoders
from hub.errors import DecodeError
from hub.model import Decoded, Provenance

from fuzzing import Runaway, mutate_bytes, time_limit

MUTANTS = int(os.environ.get("FITHUB_FUZZ_MUTANTS", "2400"))
# Share of the mutants per format: FIT is the binary format with the most ways to break.
SHARES = {"fit": 0.6, "gpx": 0.2, "tcx": 0.2}
# Seed size limits: small seeds keep thousands of decodes within a minute. TCX is
# verbose XML (the smallest real file is 68 kB) and parses quickly, so it gets more.
SMALL = {"fit": 40_000, "gpx": 40_000, "tcx": 200_000}
PER_DECODE_LIMIT_S = 10.0


# Values that keep XML well-formed but test every conversion behind the parser.
WEIRD_TEXT = [b"", b"NaN", b"-inf", b"1e400", b"-0", b"999999999999999999999", b"abc", b"-91.5",
              b"2024-13-45T99:99:99Z", b"1901-12-13T20:45:52Z", b"9999-12-31T23:59:59Z", b"0x1F", b" 12 "]
TEXT_NODE = re.compile(rb">([^<>]{1,40})<")


def mutate_xml_values(data: bytes, rng: random.Random) -> bytes:
    """Replace a few element texts with hostile values, keeping the XML well-formed."""
    spans = [m.span(1) for m in TEXT_NODE.finditer(data)]
    if not spans:
        return data
    buf = bytearray(data)
    for start, end in sorted(rng.sample(spans, min(len(spans), rng.randint(1, 6))), reverse=True):
        buf[start:end] = rng.choice(WEIRD_TEXT)
    return bytes(buf)


def mutate(data: bytes, rng: random.Random) -> bytes:
    if data.lstrip()[:1] == b"<" and rng.random() < 0.5:
        return mutate_xml_values(data, rng)
    return mutate_bytes(data, rng)


def seeds(shared: Path, own: Path, fmt: str) -> list[tuple[str, bytes]]:
    """Real corpus files plus the project's own edge-case files of one format."""
    files = [
        p for root in (shared, own) for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix.lower() == f".{fmt}" and 0 < p.stat().st_size <= SMALL[fmt]
    ]
    return [(p.name, p.read_bytes()) for p in files]


def check(decode, data: bytes, name: str) -> None:
    origin = Provenance(source="fuzz", sha256=None, received_at=datetime.now(timezone.utc), name=name)
    try:
        with time_limit(PER_DECODE_LIMIT_S):
            result = decode(data, origin)
    except DecodeError as exc:
        assert exc.name == name, f"DecodeError does not name the file: {exc}"
        assert exc.why, "DecodeError without a reason"
        return
    except Runaway:
        pytest.fail(f"{name}: decode ran longer than {PER_DECODE_LIMIT_S}s")
    assert isinstance(result, Decoded)
    for activity in result.activities:
        assert activity.start.tzinfo is not None
        assert all(len(c) == len(activity.samples.offsets_s) for c in activity.samples.columns.values())


@pytest.mark.parametrize("fmt", ["fit", "gpx", "tcx"])
def test_mutants_never_crash(shared, own, fmt):
    corpus = seeds(shared, own, fmt)
    assert corpus, f"no {fmt} seeds under {shared}"
    decode = decoders()[fmt]
    rng = random.Random(f"fithub-{fmt}")
    count = max(1, int(MUTANTS * SHARES[fmt]))
    for i in range(count):
        name, data = corpus[i % len(corpus)]
        mutant = mutate(data, rng)
        check(decode, mutant, f"{name}#mutant{i}")


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=512), fmt=st.sampled_from(["fit", "gpx", "tcx"]))
def test_arbitrary_bytes_never_crash(data, fmt):
    check(decoders()[fmt], data, "random.bin")


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=300))
def test_valid_fit_header_with_garbage_body(body):
    # A well-formed 14-byte header in front of noise reaches deep into the record parser.
    import struct

    header = struct.pack("<BBHI4sH", 14, 0x20, 2132, len(body), b".FIT", 0)
    check(decoders()["fit"], header + body, "garbage.fit")
