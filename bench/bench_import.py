"""Import benchmark: fithub's end-to-end import against a plain fitdecode decode.

    .venv/bin/python bench/bench_import.py [--corpus DIR] [--repeat N]

Runs, each in a fresh subprocess so peak memory (max RSS) is measured per phase:
  1. plain  - fitdecode.FitReader over every FIT file, touching every frame (the
              reference: the least work any FIT importer built on fitdecode can do);
  2. fithub - the whole import pipeline into a new SQLite database: SHA-256, sniffing,
              decoding into the model, derived values, sample compression, the raw
              archive and the database transaction;
then the same two phases for a synthetic 10-hour 1 Hz ride (36,000 records), for the
memory ceiling. Prints time, throughput, peak RSS and the ratio fithub / plain.
Timings are the best of --repeat runs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_CORPUS = ROOT / ".." / "shared" / "fixtures" / "fit"


def fit_files(corpus: Path) -> list[Path]:
    return sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix.lower() == ".fit")


def phase_plain(files: list[str]) -> dict:
    import fitdecode

    frames = 0
    failed = 0
    total_bytes = 0
    start = time.perf_counter()
    for path in files:
        data = Path(path).read_bytes()
        total_bytes += len(data)
        try:
            for _ in fitdecode.FitReader(io.BytesIO(data)):
                frames += 1
        except Exception:  # broken corpus files: the reference just stops there
            failed += 1
    return {"seconds": time.perf_counter() - start, "frames": frames, "failed": failed, "bytes": total_bytes}


def phase_fithub(files: list[str]) -> dict:
    from connectors.files import decoders, sniff
    from hub.inputs import iter_payloads
    from hub.pipeline import Summary, ingest_all
    from hub.storage import Store

    with tempfile.TemporaryDirectory() as home:
        store = Store(f"sqlite:///{home}/fithub.db", Path(home))
        summary = Summary()
        decs = decoders()
        start = time.perf_counter()
        for outcome in ingest_all(store, iter_payloads(files), decoders=decs, sniff=sniff):
            summary.add(outcome)
        seconds = time.perf_counter() - start
        store.close()
    return {
        "seconds": seconds,
        "imported": len(summary.imported) + len(summary.merged),
        "rejected": len(summary.rejected),
        "activities": sum(len(i.activity_ids) for i in summary.imported + summary.merged),
    }


def make_long_ride(path: Path, hours: float = 10.0) -> None:
    """Write a 1 Hz FIT ride of ``hours`` with GPS, altitude, HR, cadence, power, speed."""
    import math

    from connectors.export import export
    from hub.model import Activity, Lap, SampleStream

    n = int(hours * 3600)
    start = datetime(2024, 6, 1, 6, 0, tzinfo=timezone.utc)
    lat, lon, dist = [], [], []
    d = 0.0
    for i in range(n):
        speed = 8.0 + 2.0 * math.sin(i / 600)
        d += speed
        dist.append(d)
        lat.append(46.0 + 0.02 * math.sin(i / 3000))
        lon.append(7.0 + 0.02 * math.cos(i / 3000) + i * 1e-6)
    samples = SampleStream(
        offsets_s=[float(i) for i in range(n)],
        columns={
            "lat_deg": lat,
            "lon_deg": lon,
            "altitude_m": [500 + 200 * math.sin(i / 1800) for i in range(n)],
            "distance_m": dist,
            "hr_bpm": [130 + (i % 40) for i in range(n)],
            "cadence_rpm": [85 + (i % 10) for i in range(n)],
            "power_w": [200 + (i % 80) for i in range(n)],
            "speed_mps": [8.0 + 2.0 * math.sin(i / 600) for i in range(n)],
        },
    )
    activity = Activity(
        sport="cycling",
        start=start,
        elapsed_s=float(n - 1),
        distance_m=d,
        laps=(Lap(start=start, elapsed_s=float(n - 1), distance_m=d),),
        samples=samples,
    )
    path.write_bytes(export(activity, "fit"))


def run_phase(phase: str, files: list[str]) -> dict:
    """Run one phase in a new interpreter and return its figures plus peak RSS."""
    proc = subprocess.run(
        [sys.executable, __file__, "--phase", phase, *files],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"phase {phase} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def best_of(phase: str, files: list[str], repeat: int) -> dict:
    runs = [run_phase(phase, files) for _ in range(repeat)]
    best = min(runs, key=lambda r: r["seconds"])
    best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    return best


def report(title: str, plain: dict, fithub: dict) -> None:
    mb = plain["bytes"] / 2**20
    print(f"\n{title}")
    print(f"  {'':8} {'seconds':>9} {'MiB/s':>8} {'peak RSS MiB':>13}")
    for label, r in (("fitdecode", plain), ("fithub", fithub)):
        print(f"  {label:8} {r['seconds']:9.2f} {mb / r['seconds']:8.2f} {r['peak_rss_mb']:13.1f}")
    print(f"  ratio fithub/fitdecode: {fithub['seconds'] / plain['seconds']:.2f} (target < 1.5)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--phase", choices=["plain", "fithub"])
    parser.add_argument("files", nargs="*")
    args = parser.parse_args()

    if args.phase:
        result = (phase_plain if args.phase == "plain" else phase_fithub)(args.files)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    files = [str(p) for p in fit_files(args.corpus)]
    if not files:
        raise SystemExit(f"no FIT files under {args.corpus}")
    plain = best_of("plain", files, args.repeat)
    fithub = best_of("fithub", files, args.repeat)
    print(f"FIT corpus: {len(files)} files, {plain['bytes'] / 2**20:.1f} MiB, {plain['frames']} frames; "
          f"fithub imported {fithub['imported']} files ({fithub['activities']} activities), "
          f"rejected {fithub['rejected']}; best of {args.repeat}")
    report("Whole FIT corpus", plain, fithub)

    with tempfile.TemporaryDirectory() as tmp:
        ride = Path(tmp) / "ten_hour_ride.fit"
        make_long_ride(ride)
        plain = best_of("plain", [str(ride)], args.repeat)
        fithub = best_of("fithub", [str(ride)], args.repeat)
        report(f"10-hour 1 Hz ride ({ride.stat().st_size / 2**20:.1f} MiB, 36,000 records)", plain, fithub)
        print(f"  peak memory target: fithub < 150 MiB -> {'ok' if fithub['peak_rss_mb'] < 150 else 'OVER'}")
    print(f"\npython {sys.version.split()[0]}, {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
