"""Mutation fuzzing of the fast FIT scanner against fitdecode's.

Every mutant of a real (or hand-built) FIT file must either be scanned by the fast
scanner or be handed over with its own FastUnsupported; nothing else may escape, and
no scan may take more than 2 s. Where the fast scanner gives a scan, it must be
identical to fitdecode's, damage included (the records kept before a defect, the
error and its byte offset); the decoder as a whole must end in a
model or in one DecodeError that names the file. The seed is fixed so a failure
reproduces; FITHUB_FUZZ_MUTANTS raises the count (nightly-style runs).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest
from test_fit_fast import assert_same_scan, developer_body, fit_file, simple_ride  # noqa: I001 - sibling test module

from connectors.files.fit import decode_fit_with
from connectors.files.fit_fast import FastUnsupported, scan_fit_fast
from connectors.files.fit_scan import scan_fit
from hub.errors import DecodeError
from hub.model import Decoded, Provenance

from fuzzing import Runaway, mutate_bytes, time_limit

MUTANTS = int(os.environ.get("FITHUB_FUZZ_MUTANTS", "5000"))
SEED_LIMIT = 12_000  # bytes: small seeds keep fitdecode's reference scan of each mutant short
LIMIT_S = 2.0


mutate = mutate_bytes


def seeds() -> list[tuple[str, bytes]]:
    root = Path(__file__).resolve().parents[1]
    roots = [r for r in (root / ".." / "shared" / "fixtures", root / "fixtures") if r.exists()]
    files = sorted(
        p for r in roots for p in r.rglob("*")
        if p.is_file() and p.suffix.lower() == ".fit" and 0 < p.stat().st_size <= SEED_LIMIT
    )
    out = [(p.name, p.read_bytes()) for p in files]
    out += [("built_ride.fit", simple_ride(30)), ("built_developer.fit", fit_file(developer_body()))]
    return out


def origin(name: str) -> Provenance:
    return Provenance(source="fuzz", sha256=None, received_at=datetime.now(timezone.utc), name=name)


def test_fast_scanner_mutants(capsys):
    corpus = seeds()
    assert len(corpus) >= 10
    rng = random.Random("fithub-fit-fast")
    outcomes: Counter[str] = Counter()
    slowest = 0.0
    for i in range(MUTANTS):
        name, data = corpus[i % len(corpus)]
        mutant = mutate(data, rng)
        label = f"{name}#mutant{i}"
        start = time.perf_counter()
        try:
            with time_limit(LIMIT_S):
                fast = scan_fit_fast(mutant)
        except FastUnsupported:
            fast = None
        except Runaway:
            pytest.fail(f"{label}: fast scan ran longer than {LIMIT_S} s")
        slowest = max(slowest, time.perf_counter() - start)
        ref = scan_fit(mutant)
        if fast is not None:
            # damaged mutants included: same records kept, same error at the same byte
            assert_same_scan(fast, ref, label)
            outcomes["identical, fitdecode stopped early" if ref.error else "identical, whole file read"] += 1
        else:
            outcomes["handed to fitdecode"] += 1
        scan = fast if fast is not None else ref
        try:
            with time_limit(LIMIT_S):
                result = decode_fit_with(mutant, origin(label), lambda _data: scan)
        except DecodeError as exc:
            assert exc.name == label and exc.why
            outcomes["DecodeError"] += 1
            continue
        except Runaway:
            pytest.fail(f"{label}: decode ran longer than {LIMIT_S} s")
        assert isinstance(result, Decoded)
        for activity in result.activities:
            assert all(len(c) == len(activity.samples.offsets_s) for c in activity.samples.columns.values())
    with capsys.disabled():
        print(f"\nfast FIT fuzz: {MUTANTS} mutants of {len(corpus)} seeds: {dict(outcomes)}; "
              f"slowest fast scan {slowest * 1000:.1f} ms")
    compared = outcomes["identical, whole file read"] + outcomes["identical, fitdecode stopped early"]
    assert compared > MUTANTS // 2, "too few mutants stay on the fast path to compare"
