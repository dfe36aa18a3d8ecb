"""Fast FIT benchmark: the fast scanner against fitdecode and garmin-fit-sdk, same files, one run.

    .venv/bin/python bench/bench_fit_fast.py [--corpus DIR] [--repeat N]

Each phase runs in a fresh interpreter (so peak memory is per phase); timings are
the best of --repeat runs. Over every FIT file of the corpus:

  fast       fithub's scanner as the decoder uses it: the fast path, CRC checked,
             with fitdecode taking the files it hands over (counted);
  fitdecode  a plain fitdecode.FitReader touching every frame (default settings,
             CRC checked): the least work any importer built on fitdecode does;
  sdk        garmin-fit-sdk's Decoder.read() with its defaults (CRC checked);
  import     the whole `fithub import` pipeline into a new SQLite database
             (hash, sniff, decode, derive, dedupe, compress, archive, store);

then the import of a generated 10-hour 1 Hz ride (36,000 records) for peak memory.
Records are the FIT record messages each decoder reports (fitdecode's strict default
stops earlier in some damaged files than fithub's lenient pass, so counts differ a
little). Each phase prints wall time and CPU time: on a shared machine the CPU time
ratio is the steadier figure.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_import import fit_files, make_long_ride  # noqa: E402

DEFAULT_CORPUS = ROOT / ".." / "shared" / "fixtures" / "fit"


def _load(files: list[str]) -> list[bytes]:
    return [Path(p).read_bytes() for p in files]


def phase_fast(files: list[str]) -> dict:
    from connectors.files import fit

    datas = _load(files)
    fit.FALLBACKS.clear()
    start, cpu = time.perf_counter(), time.process_time()
    records = sum(fit.scan_fast_or_reference(d).records for d in datas if d)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "cpu": time.process_time() - cpu, "records": records,
            "fallbacks": sum(fit.FALLBACKS.values())}


def phase_fitdecode(files: list[str]) -> dict:
    import fitdecode

    datas = _load(files)
    records = failed = 0
    start, cpu = time.perf_counter(), time.process_time()
    for data in datas:
        try:
            for frame in fitdecode.FitReader(io.BytesIO(data)):
                if frame.frame_type == fitdecode.FIT_FRAME_DATA and frame.global_mesg_num == 20:
                    records += 1
        except Exception:  # broken corpus files: the reference just stops there
            failed += 1
    return {"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu, "records": records, "failed": failed}


def phase_sdk(files: list[str]) -> dict:
    from garmin_fit_sdk import Decoder, Stream

    datas = _load(files)
    records = failed = 0
    start, cpu = time.perf_counter(), time.process_time()
    for data in datas:
        try:
            messages, errors = Decoder(Stream.from_byte_array(bytearray(data))).read()
            records += len(messages.get("record_mesgs", []))
            failed += bool(errors)
        except Exception:
            failed += 1
    return {"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu, "records": records, "failed": failed}


def phase_import(files: list[str]) -> dict:
    """bench_import's fithub phase (same steps, same timed span), with its CPU time too."""
    from connectors.files import decoders, sniff
    from hub.inputs import iter_payloads
    from hub.pipeline import Summary, ingest_all
    from hub.storage import Store

    with tempfile.TemporaryDirectory() as home:
        store = Store(f"sqlite:///{home}/fithub.db", Path(home))
        summary = Summary()
        decs = decoders()
        start, cpu = time.perf_counter(), time.process_time()
        for outcome in ingest_all(store, iter_payloads(files), decoders=decs, sniff=sniff):
            summary.add(outcome)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        store.close()
    stored = summary.imported + summary.merged
    return {
        "seconds": seconds,
        "cpu": cpu,
        "imported": len(stored),
        "rejected": len(summary.rejected),
        "activities": sum(len(i.activity_ids) for i in stored),
    }


PHASES = {"fast": phase_fast, "fitdecode": phase_fitdecode, "sdk": phase_sdk, "import": phase_import}


def run_phase(phase: str, files: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--phase", phase, *files], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"phase {phase} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def best_of(phase: str, files: list[str], repeat: int) -> dict:
    runs = [run_phase(phase, files) for _ in range(repeat)]
    best = min(runs, key=lambda r: r["seconds"])
    best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    if "cpu" in best:
        best["cpu"] = min(r["cpu"] for r in runs)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--phase", choices=sorted(PHASES))
    parser.add_argument("files", nargs="*")
    args = parser.parse_args()

    if args.phase:
        result = PHASES[args.phase](args.files)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    files = [str(p) for p in fit_files(args.corpus)]
    if not files:
        raise SystemExit(f"no FIT files under {args.corpus}")
    size = sum(Path(f).stat().st_size for f in files) / 2**20
    results = {phase: best_of(phase, files, args.repeat) for phase in ("fitdecode", "sdk", "fast", "import")}
    base = results["fitdecode"]
    # the machine may be shared: its load says how far the wall times can be trusted
    load = "load average %.2f %.2f %.2f" % os.getloadavg()
    print(f"FIT corpus: {len(files)} files, {size:.1f} MiB; best of {args.repeat}; "
          f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {load}")
    # wall time is what a user waits; CPU time is steadier on a shared machine
    print(f"  {'decoder':10} {'records':>9} {'seconds':>8} {'records/s':>11} {'x fitdecode':>12} "
          f"{'CPU s':>7} {'x (CPU)':>8} {'peak MiB':>9}")
    for phase in ("fitdecode", "sdk", "fast"):
        r = results[phase]
        rate = r["records"] / r["seconds"]
        ratio = base["seconds"] / r["seconds"]
        cpu_ratio = base["cpu"] / r["cpu"]
        print(f"  {phase:10} {r['records']:9d} {r['seconds']:8.2f} {rate:11.0f} {ratio:12.1f} "
              f"{r['cpu']:7.2f} {cpu_ratio:8.1f} {r['peak_rss_mb']:9.1f}")
    fast = results["fast"]
    print(f"  fast path handed {fast['fallbacks']} damaged files to fitdecode (included in its time)")
    print(f"  target: fast >= 50x fitdecode -> wall {'ok' if base['seconds'] / fast['seconds'] >= 50 else 'MISSED'}, "
          f"CPU {'ok' if base['cpu'] / fast['cpu'] >= 50 else 'MISSED'}")

    imp = results["import"]
    ratio = base["seconds"] / imp["seconds"]
    cpu_ratio = base["cpu"] / imp["cpu"]
    print(f"\nwhole `fithub import` of the corpus: {imp['seconds']:.2f} s ({imp['cpu']:.2f} s CPU), "
          f"{imp['imported']} files imported ({imp['activities']} activities), {imp['rejected']} rejected, "
          f"peak {imp['peak_rss_mb']:.1f} MiB")
    print(f"  plain fitdecode decode / fithub import: {ratio:.1f}x wall, {cpu_ratio:.1f}x CPU "
          f"(target >= 20x -> {'ok' if ratio >= 20 else 'MISSED'})")

    with tempfile.TemporaryDirectory() as tmp:
        ride = Path(tmp) / "ten_hour_ride.fit"
        make_long_ride(ride)
        one = [str(ride)]
        ride_fast = best_of("fast", one, args.repeat)
        ride_import = best_of("import", one, args.repeat)
        print(f"\n10-hour 1 Hz ride ({ride.stat().st_size / 2**20:.1f} MiB, {ride_fast['records']} records): "
              f"fast decode {ride_fast['seconds']:.3f} s ({ride_fast['records'] / ride_fast['seconds']:.0f} records/s), "
              f"whole import {ride_import['seconds']:.2f} s")
        peak = ride_import["peak_rss_mb"]
        print(f"  peak memory of the import: {peak:.1f} MiB (target < 100 MiB -> {'ok' if peak < 100 else 'OVER'})")


if __name__ == "__main__":
    main()
