"""The fast FIT scanner against the fitdecode scanner, the reference.

Differential: for every FIT file of the real-world corpus (recursively) and of the
project's own fixtures, and for hand-built files that reach the corners the corpus
may not (big-endian definitions, compressed timestamps, developer arrays and
strings, chained segments, bad CRCs...), the fast scan and fitdecode's scan must be
identical, field by field, and so must the decoded models. A file the fast scanner
hands to fitdecode is listed in the test output; on the corpus only damaged files
may be handed over.
"""

from __future__ import annotations

import functools
import struct
from datetime import datetime, timezone
from pathlib import Path

import pytest
from fitdecode.utils import compute_crc

from connectors.files import fit as fit_module
from connectors.files.fit import decode_fit_with, scan_fast_or_reference
from connectors.files.fit_fast import CRC_COMPILED, FastUnsupported, crc16, crc16_python, scan_fit_fast
from connectors.files.fit_scan import Scan, scan_fit
from hub.errors import DecodeError
from hub.model import Provenance

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared" / "fixtures").resolve()
OWN = ROOT / "fixtures"


def fit_paths() -> list[Path]:
    roots = [r for r in (SHARED, OWN) if r.exists()]
    return sorted(p for r in roots for p in r.rglob("*") if p.is_file() and p.suffix.lower() == ".fit")


FIT_PATHS = fit_paths()
FALLBACKS: dict[str, str] = {}  # file -> why the fast scanner handed it to fitdecode


def origin(name: str) -> Provenance:
    return Provenance(source="file:fit", sha256="cd" * 32, received_at=datetime(2024, 1, 1, tzinfo=timezone.utc), name=name)


def assert_same_scan(fast: Scan, ref: Scan, name: str) -> None:
    for attr in Scan.__dataclass_fields__:
        if attr == "error":  # exceptions compare by identity: compare kind and text
            same = (type(fast.error), str(fast.error)) == (type(ref.error), str(ref.error))
            assert same, f"{name}: fast error {fast.error!r} vs fitdecode {ref.error!r}"
            continue
        assert getattr(fast, attr) == getattr(ref, attr), f"{name}: scans differ in {attr}"
    # fitdecode creates developer columns as their first value arrives; names that
    # collide are told apart in that order, so the order is part of the result
    assert list(fast.dev_columns) == list(ref.dev_columns), f"{name}: developer columns in another order"


@functools.lru_cache(maxsize=None)
def compare(path: Path) -> str | None:
    """Compare both scanners on one file; the fallback reason, or None."""
    data = path.read_bytes()
    ref = scan_fit(data)
    try:
        fast = scan_fit_fast(data)
    except FastUnsupported as exc:
        FALLBACKS[str(path.relative_to(path.parents[1]))] = str(exc)
        return str(exc)
    assert_same_scan(fast, ref, path.name)
    return None


def decode(data: bytes, name: str, scanner) -> object:
    try:
        return decode_fit_with(data, origin(name), scanner)
    except DecodeError as exc:
        return f"DecodeError: {exc}"


# ---------------------------------------------------------------------------- corpus


@pytest.mark.parametrize("path", FIT_PATHS, ids=[p.name for p in FIT_PATHS])
def test_corpus_scans_identical(path: Path):
    reason = compare(path)
    assert reason is None, f"{path.name}: handed to fitdecode: {reason}"


@pytest.mark.parametrize("path", FIT_PATHS, ids=[p.name for p in FIT_PATHS])
def test_corpus_models_identical(path: Path):
    data = path.read_bytes()
    fast = decode(data, path.name, scan_fast_or_reference)
    ref = decode(data, path.name, scan_fit)
    assert fast == ref


def test_corpus_present_and_fallbacks_listed(capsys):
    if not SHARED.exists():
        pytest.skip(f"real-world corpus not found at {SHARED}")
    assert len(FIT_PATHS) >= 60
    reasons = {p.name: compare(p) for p in FIT_PATHS}
    handed = {name: why for name, why in reasons.items() if why is not None}
    with capsys.disabled():
        print(f"\nfast FIT scanner: {len(FIT_PATHS) - len(handed)} of {len(FIT_PATHS)} files read fast, "
              f"{len(handed)} handed to fitdecode:")
        for name, why in sorted(handed.items()):
            print(f"  fallback {name}: {why}")
    assert not handed


def test_fallback_is_counted():
    # a component of an invalid (None) hr.event_timestamp_12 makes fitdecode fail in
    # its own arithmetic: the fast scanner does not imitate that, it hands the file over
    body = file_id() + definition(1, 20, [(253, 4, UINT32), (3, 1, UINT8)]) + message(1, "IB", T0, 100)
    body += definition(2, 132, [(253, 4, UINT32), (9, 4, UINT32), (10, 3, BYTE)]) + message(2, "II3s", T0, 1000, b"\xff" * 3)
    data = fit_file(body + session(3, T0, 10))
    before = sum(fit_module.FALLBACKS.values())
    scan = scan_fast_or_reference(data)
    assert scan.error is not None  # fitdecode's verdict
    assert sum(fit_module.FALLBACKS.values()) == before + 1


# ---------------------------------------------------------------------------- CRC


def test_crc_compiled_and_python_agree_with_fitdecode():
    assert CRC_COMPILED, "fastcrc is a dependency: the compiled CRC should be in use"
    small = [p for p in FIT_PATHS if 0 < p.stat().st_size <= 60_000]
    assert small
    for path in small:
        data = path.read_bytes()
        assert crc16(data) == crc16_python(data) == compute_crc(data), path.name


# ---------------------------------------------------------------------------- hand-built files

ENUM, SINT8, UINT8, SINT16, UINT16, SINT32, UINT32, STRING, FLOAT32, UINT8Z, UINT16Z, UINT32Z, BYTE = (
    0x00, 0x01, 0x02, 0x83, 0x84, 0x85, 0x86, 0x07, 0x88, 0x0A, 0x8B, 0x8C, 0x0D,
)
T0 = 1_000_000_000  # FIT seconds (2021)


def definition(local: int, global_num: int, fields, *, big: bool = False, dev=()) -> bytes:
    header = 0x40 | local | (0x20 if dev else 0)
    e = ">" if big else "<"
    out = bytes([header, 0, 1 if big else 0]) + struct.pack(e + "H", global_num) + bytes([len(fields)])
    out += b"".join(bytes(f) for f in fields)
    if dev:
        out += bytes([len(dev)]) + b"".join(bytes(d) for d in dev)
    return out


def message(local: int, fmt: str, *values, big: bool = False) -> bytes:
    return bytes([local]) + struct.pack((">" if big else "<") + fmt, *values)


def compressed(local: int, offset: int, fmt: str, *values) -> bytes:
    return bytes([0x80 | (local << 5) | (offset & 0x1F)]) + struct.pack("<" + fmt, *values)


def fit_file(body: bytes, *, header_crc: bool = True) -> bytes:
    head = struct.pack("<BBHI4s", 14, 0x20, 2132, len(body), b".FIT")
    head += struct.pack("<H", compute_crc(head) if header_crc else 0)
    return head + body + struct.pack("<H", compute_crc(head + body))


def file_id(local: int = 0) -> bytes:
    # type activity, manufacturer garmin, product, serial, time_created
    return definition(local, 0, [(0, 1, ENUM), (1, 2, UINT16), (2, 2, UINT16), (3, 4, UINT32Z), (4, 4, UINT32)]) + message(
        local, "BHHII", 4, 1, 1234, 987654, T0
    )


def session(local: int, start: int, seconds: int) -> bytes:
    # start_time, total_elapsed_time (ms), sport cycling, timestamp
    return definition(local, 18, [(2, 4, UINT32), (7, 4, UINT32), (5, 1, ENUM), (253, 4, UINT32)]) + message(
        local, "IIBI", start, seconds * 1000, 2, start + seconds
    )


RECORD_FIELDS = [(253, 4, UINT32), (0, 4, SINT32), (1, 4, SINT32), (2, 2, UINT16), (6, 2, UINT16), (3, 1, UINT8), (13, 1, SINT8)]


def simple_ride(n: int = 60, big: bool = False) -> bytes:
    body = file_id() + definition(1, 20, RECORD_FIELDS, big=big)
    for i in range(n):
        hr = 0xFF if i % 7 == 3 else 120 + i % 30  # some invalid heart rates
        body += message(1, "IiiHHBb", T0 + i, 555_000_000 + i * 1000, 95_000_000 - i * 700, 2500 + i, 4000 + 10 * i, hr, 21, big=big)
    return fit_file(body + session(2, T0, n))


def check_built(data: bytes, name: str) -> Scan:
    ref = scan_fit(data)
    assert ref.error is None, f"{name}: the hand-built file is not valid FIT: {ref.error}"
    fast = scan_fit_fast(data)  # must not fall back
    assert_same_scan(fast, ref, name)
    assert decode(data, name, scan_fast_or_reference) == decode(data, name, scan_fit)
    return fast


@pytest.mark.parametrize("big", [False, True], ids=["little-endian", "big-endian"])
def test_records_and_components(big):
    scan = check_built(simple_ride(big=big), "ride")
    assert scan.records == 60
    # altitude's component gives enhanced_altitude; speed's gives enhanced_speed
    assert scan.columns["enhanced_altitude"].values[0] == pytest.approx(2500 / 5 - 500)
    assert scan.columns["enhanced_speed"].values[1] == pytest.approx(4.01)
    hr = scan.columns["heart_rate"]
    assert 3 not in hr.rows and len(hr.rows) == 60 - 9  # invalid values are gaps


def test_compressed_timestamps():
    body = file_id() + definition(1, 20, [(253, 4, UINT32), (3, 1, UINT8)]) + message(1, "IB", T0 + 30, 100)
    body += definition(2, 20, [(3, 1, UINT8)])
    expected = [T0 + 30]
    t = T0 + 30
    for i in range(1, 80):
        t += 3  # rolls over the 5-bit offset several times
        body += compressed(2, t & 0x1F, "B", 100 + i % 50)
        expected.append(t)
    scan = check_built(fit_file(body + session(3, T0 + 30, 240)), "compressed")
    assert scan.columns["timestamp"].values == expected


def developer_body() -> bytes:
    body = file_id()
    # developer_data_id: developer_data_index 0 (application_id as 16 bytes)
    body += definition(1, 207, [(1, 16, BYTE), (3, 1, UINT8)]) + message(1, "16sB", bytes(range(16)), 0)
    # field_description: index, number, base type, name, units
    desc = definition(2, 206, [(0, 1, UINT8), (1, 1, UINT8), (2, 1, UINT8), (3, 16, STRING), (8, 8, STRING)])
    body += desc + message(2, "BBB16s8s", 0, 0, FLOAT32, b"core_temp", b"C")
    body += message(2, "BBB16s8s", 0, 1, UINT8, b"balance", b"%")
    body += message(2, "BBB16s8s", 0, 2, STRING, b"note", b"")
    # record: timestamp, heart rate; dev fields: float, uint8[4] array, string, an undescribed one
    dev = [(0, 4, 0), (1, 4, 0), (2, 6, 0), (9, 2, 0)]
    body += definition(3, 20, [(253, 4, UINT32), (3, 1, UINT8)], dev=dev)
    for i in range(40):
        temp = float("nan") if i % 5 == 0 else 37.0 + i / 10
        balance = (50, 0xFF, 48 + i % 3, 0xFF)
        note = b"lap\x00\x00\x00" if i % 4 else b"\x00" * 6
        body += message(3, "IBf4B6sH", T0 + i, 130, temp, *balance, note, 0xFFFF if i % 3 else i)
    return body + session(4, T0, 40)


def test_developer_fields():
    scan = check_built(fit_file(developer_body()), "developer")
    names = sorted(c.name for c in scan.dev_columns.values())
    assert names == ["balance", "core_temp", "dev_0_9", "note"]


def test_chained_segments_and_bad_crc():
    one, two = simple_ride(20), fit_file(developer_body())
    scan = check_built(one + two, "chained")
    assert scan.segments == scan.complete_segments == 2 and not scan.crc_mismatch
    broken = bytearray(one + two)
    broken[len(one) - 1] ^= 0x55  # the first segment's CRC
    scan = check_built(bytes(broken), "bad crc")
    assert scan.crc_mismatch


def test_header_without_crc():
    body = simple_ride()[14:-2]
    check_built(fit_file(body, header_crc=False), "no header crc")


def test_accumulated_compressed_speed_distance():
    # compressed_speed_distance: 3 bytes, speed (12 bits, /100) and distance (12 bits, /16, accumulated)
    body = file_id() + definition(1, 20, [(253, 4, UINT32), (8, 3, BYTE), (3, 1, UINT8)])
    distance = 0
    for i in range(300):
        distance = (distance + 75) & 0xFFF  # wraps every ~55 records
        speed = 300 + i
        packed = (speed | (distance << 12)).to_bytes(3, "little")
        body += message(1, "I3sB", T0 + i, packed, 140)
    scan = check_built(fit_file(body + session(2, T0, 300)), "compressed speed/distance")
    assert scan.columns["distance"].values[-1] == pytest.approx(300 * 75 / 16)


def test_all_invalid_compressed_speed_distance_stays_fast():
    body = file_id() + definition(1, 20, [(253, 4, UINT32), (8, 3, BYTE), (6, 2, UINT16)])
    for i in range(50):
        body += message(1, "I3sH", T0 + i, b"\xff\xff\xff", 3000)
    scan = check_built(fit_file(body + session(2, T0, 50)), "invalid compressed speed/distance")
    assert "distance" not in scan.columns and len(scan.columns["speed"].values) == 50


def test_hrv_arrays():
    body = file_id() + definition(1, 20, [(253, 4, UINT32), (3, 1, UINT8)])
    body += definition(2, 78, [(0, 10, UINT16)])
    for i in range(30):
        body += message(1, "IB", T0 + i, 120)
        body += message(2, "5H", 800 + i, 810, 0xFFFF, 0xFFFF, 0xFFFF)
    scan = check_built(fit_file(body + session(3, T0, 30)), "hrv")
    assert scan.hrv[0] == (1, (0.8, 0.81, None, None, None))


def test_redefinition_and_interleaved_layouts():
    # two local messages with different record layouts, alternating, and a redefinition
    body = file_id() + definition(1, 20, [(253, 4, UINT32), (3, 1, UINT8)])
    body += definition(2, 20, [(253, 4, UINT32), (7, 2, UINT16), (3, 1, UINT8)])
    swapped = False
    for i in range(40):
        if i % 3 and swapped:
            body += message(1, "BI", 100 + i, T0 + i)
        elif i % 3:
            body += message(1, "IB", T0 + i, 100 + i)
        else:
            body += message(2, "IHB", T0 + i, 200 + i, 150)
        if i == 20:  # later local-1 messages use another field order
            body += definition(1, 20, [(3, 1, UINT8), (253, 4, UINT32)])
            swapped = True
    check_built(fit_file(body + session(3, T0, 40)), "interleaved")


@pytest.mark.parametrize("cut", range(1, 140, 3))
def test_truncated_file_like_fitdecode(cut):
    # cut inside the CRC, inside records, inside the session and its definition
    data = simple_ride()[:-cut]
    ref = scan_fit(data)
    assert ref.error is not None
    assert_same_scan(scan_fit_fast(data), ref, f"cut {cut}")
    assert decode(data, "cut", scan_fast_or_reference) == decode(data, "cut", scan_fit)


def test_damaged_structures_like_fitdecode():
    ride = simple_ride()
    cases = {
        "undefined local message": ride[:200] + bytes([0x07]) + ride[201:],
        "trailing junk": ride + b"garbage after the data",
        "partial second header": ride + ride[:9],
        "declared size too small": ride[:4] + struct.pack("<I", len(ride) - 14 - 2 - 5) + ride[8:],
        "empty": b"",
    }
    for name, data in cases.items():
        ref = scan_fit(data)
        assert_same_scan(scan_fit_fast(data), ref, name)


def test_layout_cache_gives_same_result_twice():
    data = fit_file(developer_body())
    assert scan_fit_fast(data) == scan_fit_fast(data) == scan_fit(data)


def test_pure_python_crc_when_fastcrc_is_missing():
    # fastcrc is a wheel; where it cannot install, the scanner must still check CRCs
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['fastcrc'] = None\n"
        "from connectors.files import fit_fast\n"
        "from connectors.files.fit_scan import scan_fit\n"
        "assert not fit_fast.CRC_COMPILED\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "bad = bytearray(data); bad[-1] ^= 1\n"
        "for d in (data, bytes(bad)):\n"
        "    assert fit_fast.scan_fit_fast(d).crc_mismatch == scan_fit(d).crc_mismatch\n"
        "print(fit_fast.scan_fit_fast(bytes(bad)).crc_mismatch)\n"
    )
    path = FIT_PATHS[0] if FIT_PATHS else None
    if path is None or path.stat().st_size == 0:
        path = OWN / "developer_fields.fit"
    proc = subprocess.run([sys.executable, "-c", script, str(path)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"


# ---------------------------------------------------------------------------- speed paths
# The scanner's shortcuts (runs of records found in growing windows, definitions
# repeated before every message, invalid values found in the raw bytes, columns
# merged from many runs of several layouts, the paused garbage collector) must give
# exactly fitdecode's scan.


def event(local: int, t: int) -> bytes:
    # an event message: skipped by the fast scanner (it only keeps its timestamp)
    return message(local, "IBB", t, 0, 4)


def test_runs_of_every_length_across_the_search_windows():
    body = file_id() + definition(1, 20, [(253, 4, UINT32), (3, 1, UINT8), (7, 2, UINT16)])
    body += definition(2, 21, [(253, 4, UINT32), (0, 1, ENUM), (1, 1, ENUM)])
    t = T0
    lengths = [1, 2, 15, 16, 17, 63, 64, 65, 255, 256, 257, 1100]
    for length in lengths:
        for _ in range(length):
            body += message(1, "IBH", t, 100 + t % 50, 200 + t % 7)
            t += 1
        body += event(2, t)
    for _ in range(40):  # a last run up to the session
        body += message(1, "IBH", t, 120, 210)
        t += 1
    scan = check_built(fit_file(body + session(3, T0, t - T0)), "runs")
    assert scan.records == sum(lengths) + 40
    assert scan.columns["timestamp"].values == list(range(T0, t))


def test_definition_repeated_before_every_message():
    # some devices define each message again right before it; an accumulated
    # component restarts at every definition (fitdecode's rule)
    rec = definition(1, 20, [(253, 4, UINT32), (8, 3, BYTE), (3, 1, UINT8)])
    hrv = definition(2, 78, [(0, 2, UINT16)])
    body = file_id()
    for i in range(120):
        packed = ((300 + i) | ((i * 75) & 0xFFF) << 12).to_bytes(3, "little")
        body += rec + message(1, "I3sB", T0 + i, packed, 130 + i % 20)
        body += hrv + message(2, "H", 700 + i % 13)
    scan = check_built(fit_file(body + session(3, T0, 120)), "repeated definitions")
    assert scan.records == 120 and len(scan.hrv) == 120


def test_columns_with_few_many_and_no_valid_values():
    fields = [(253, 4, UINT32), (3, 1, UINT8), (4, 1, UINT8), (7, 2, UINT16), (13, 1, SINT8)]
    body = file_id() + definition(1, 20, fields)
    n = 300
    for i in range(n):
        hr = 0xFF if i in (0, 1, 150, 299) else 90 + i % 60  # a few gaps, at both ends too
        cadence = 0xFF if i % 2 else 80  # every other value missing
        # valid powers whose bytes side by side spell the invalid 0xFFFF
        power = 0xFF01 if i % 2 else 0x01FF
        body += message(1, "IBBHb", T0 + i, hr, cadence, power, 0x7F)  # temperature: all invalid
    scan = check_built(fit_file(body + session(2, T0, n)), "invalid values")
    assert scan.columns["heart_rate"].rows == [i for i in range(n) if i not in (0, 1, 150, 299)]
    assert scan.columns["cadence"].rows == list(range(0, n, 2))
    assert len(scan.columns["power"].values) == n
    assert "temperature" not in scan.columns


def test_columns_merged_from_many_runs_of_several_layouts():
    # three record layouts and compressed-timestamp records, in runs of 1 to 5,
    # each column present in some of them and with gaps in some
    body = file_id()
    body += definition(1, 20, [(253, 4, UINT32), (3, 1, UINT8), (4, 1, UINT8)])
    body += definition(2, 20, [(3, 1, UINT8), (253, 4, UINT32), (7, 2, UINT16)])
    body += definition(3, 20, [(253, 4, UINT32), (7, 2, UINT16), (4, 1, UINT8), (3, 1, UINT8)])
    t = T0
    pattern = [(1, 3), (2, 1), (1, 1), (3, 5), (2, 2), (0, 2), (3, 1), (1, 4)]
    for round_ in range(25):
        for local, count in pattern:
            for _ in range(count):
                hr = 0xFF if (t + round_) % 11 == 0 else 100 + t % 40
                if local == 1:
                    body += message(1, "IBB", t, hr, 70 + t % 9)
                elif local == 2:
                    body += message(2, "BIH", hr, t, 150 + t % 30)
                elif local == 3:
                    body += message(3, "IHBB", t, 0xFFFF if t % 4 == 0 else 180, 0xFF, hr)
                else:
                    body += definition(0, 20, [(3, 1, UINT8)]) + compressed(0, t & 0x1F, "B", hr)
                t += 1
    scan = check_built(fit_file(body + session(5, T0, t - T0)), "merged columns")
    assert scan.records == t - T0


def test_garbage_collector_state_is_restored():
    import gc

    ride = simple_ride(20)
    unsupported = fit_file(
        file_id() + definition(1, 20, [(253, 4, UINT32), (3, 1, UINT8)]) + message(1, "IB", T0, 100)
        + definition(2, 132, [(253, 4, UINT32), (9, 4, UINT32), (10, 3, BYTE)]) + message(2, "II3s", T0, 1000, b"\xff" * 3)
    )
    assert gc.isenabled()
    try:
        for data in (ride, ride[:-30], b"not a FIT file at all"):
            scan_fit_fast(data)
            assert gc.isenabled()
        with pytest.raises(FastUnsupported):
            scan_fit_fast(unsupported)
        assert gc.isenabled()
        gc.disable()  # a caller that runs without the collector keeps it off
        scan_fit_fast(ride)
        assert not gc.isenabled()
    finally:
        gc.enable()
