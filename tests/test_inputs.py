"""Input expansion (folders, zip, gz) and format sniffing."""

from __future__ import annotations

import gzip
import zipfile

from connectors.files.sniff import sniff
from hub.inputs import MAX_MEMBER_BYTES, count_inputs, iter_payloads


def payloads(paths):
    return [(p.name, p.data, p.error) for _, members in iter_payloads(paths) for p in members]


def test_folder_walk_takes_activity_files_only(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "ride.FIT").write_bytes(b"x")
    (tmp_path / "b.gpx").write_bytes(b"y")
    (tmp_path / "README.md").write_text("no")
    (tmp_path / "._b.gpx").write_bytes(b"apple double")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "c.tcx").write_bytes(b"z")
    got = payloads([str(tmp_path)])
    assert sorted(n for n, _, _ in got) == [str(tmp_path / "a" / "ride.FIT"), str(tmp_path / "b.gpx")]
    assert count_inputs([str(tmp_path)]) == 2


def test_explicit_file_is_always_tried(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("hello")
    assert payloads([str(f)]) == [(str(f), b"hello", None)]


def test_missing_file_is_named(tmp_path):
    [(name, data, error)] = payloads([str(tmp_path / "gone.fit")])
    assert data is None and error == "no such file"


def test_gzip_by_magic_and_corrupt_gzip(tmp_path):
    good = tmp_path / "a.gpx.gz"
    good.write_bytes(gzip.compress(b"<gpx/>"))
    bad = tmp_path / "b.gpx.gz"
    bad.write_bytes(gzip.compress(b"<gpx>" * 1000)[:-30])
    [(_, data, _), (_, bad_data, error)] = payloads([str(good), str(bad)])
    assert data == b"<gpx/>"
    assert bad_data is None and "truncated" in error


def test_zip_members_named_with_archive_path(tmp_path):
    z = tmp_path / "export.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x/run.fit", b"fit bytes")
        zf.writestr("x/skip.jpg", b"jpeg")
        zf.writestr("__MACOSX/x/._run.fit", b"junk")
    assert payloads([str(z)]) == [(f"{z}!x/run.fit", b"fit bytes", None)]


def test_corrupt_zip(tmp_path):
    z = tmp_path / "bad.zip"
    z.write_bytes(b"PK\x03\x04 not really")
    [(name, data, error)] = payloads([str(z)])
    assert name == str(z) and data is None and "corrupt zip" in error


def test_zip_bomb_member_refused(tmp_path):
    z = tmp_path / "bomb.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("big.fit", b"\0" * (MAX_MEMBER_BYTES + 1))
    [(_, data, error)] = payloads([str(z)])
    assert data is None and "limit" in error


def test_sniff_content_over_name():
    fit = bytes([14, 0x20, 0, 0, 0, 0, 0, 0]) + b".FIT" + b"\0\0"
    assert sniff("ride.gpx", fit) == "fit"
    assert sniff("x.fit", b'\xef\xbb\xbf<?xml version="1.0"?><gpx version="1.1">') == "gpx"
    assert sniff("x.xml", b"<TrainingCenterDatabase xmlns='...'>") == "tcx"
    assert sniff("x.xml", b"<tcx:TrainingCenterDatabase>") == "tcx"
    assert sniff("broken.tcx", b"<Activities><Activity>") == "tcx"  # damaged: the name decides
    assert sniff("notes.txt", b"hello") is None
