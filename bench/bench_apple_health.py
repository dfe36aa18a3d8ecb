"""Apple Health import end to end next to a bare lxml iterparse of the same file.

Generates a synthetic ``export.xml`` of ``--mb`` megabytes (plus its workout-routes
folder) with ``fixtures/make_apple_health.py``, then, in the same run and each in its
own fresh process (so peak memory is that run's alone):

* **bare**: ``lxml.etree.iterparse`` over the file, clearing and dropping each
  top-level element (the floor for any Python importer of this format);
* **plain**: the same iterparse plus plain ``sqlite3`` inserts of the raw attribute
  strings (no identity, no dedupe, no index): what bare storage costs;
* **import**: ``AppleHealthImporter.import_path`` into a fresh database: filters,
  identities, batched inserts, priority-ready rows, workouts with routes and HR.

Prints MB/s, records/s, the ratio import/bare and the peak RSS of each. The machine
is shared, so the two are alternated ``--repeat`` times and medians reported, and the
CPU seconds of both (all threads) are reported beside the wall-clock ratio: the import
writes on a second thread, which only shortens the wall clock when a core is free.

    .venv/bin/python bench/bench_apple_health.py --mb 500
    .venv/bin/python bench/bench_apple_health.py --mb 100 --db postgresql://postgres@127.0.0.1/fithub_bench
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PEAK = r'''
def peak_kb():
    # VmHWM is this process's own peak; ru_maxrss would include the parent's RSS at
    # fork time (Linux carries it across exec), i.e. the generator's or pytest's.
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
'''

BARE = PEAK + r"""
import resource, sys, time
from lxml import etree
t, cpu = time.perf_counter(), time.process_time()
n = 0
# Every top-level element is cleared and dropped once read, so memory stays flat
# (clearing only Records would keep every Workout and summary under the root).
top = {"Record", "Correlation", "Workout", "ActivitySummary", "ExportDate", "Me"}
for _, el in etree.iterparse(sys.argv[1], events=("end",)):
    if el.tag in top:
        n += el.tag == "Record"
        el.clear(keep_tail=False)
        while el.getprevious() is not None:
            del el.getparent()[0]
print(time.perf_counter() - t, n, peak_kb(), time.process_time() - cpu)
"""

# The second reference: lxml plus plain sqlite3 inserts of the raw attributes
# (no identity, no conversion, no dedupe, no index): what storage alone costs here.
PLAIN = PEAK + r"""
import resource, sqlite3, sys, time
from lxml import etree
db = sqlite3.connect(sys.argv[2], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE r (type TEXT, source TEXT, unit TEXT, value TEXT, start TEXT, end TEXT, created TEXT)")
t = time.perf_counter()
n = 0
batch = []
top = {"Record", "Correlation", "Workout", "ActivitySummary", "ExportDate", "Me"}
def flush():
    db.execute("BEGIN")
    db.executemany("INSERT INTO r VALUES (?, ?, ?, ?, ?, ?, ?)", batch)
    db.execute("COMMIT")
    batch.clear()
for _, el in etree.iterparse(sys.argv[1], events=("end",)):
    if el.tag in top:
        if el.tag == "Record":
            a = el.attrib
            batch.append((a.get("type"), a.get("sourceName"), a.get("unit"), a.get("value"), a.get("startDate"),
                          a.get("endDate"), a.get("creationDate")))
            n += 1
            if len(batch) >= 10000:
                flush()
        el.clear(keep_tail=False)
        while el.getprevious() is not None:
            del el.getparent()[0]
flush()
print(time.perf_counter() - t, n, peak_kb())
"""

IMPORT = PEAK + r"""
import resource, sys, time
from pathlib import Path
from hub.storage import Store
from connectors.apple_health import IMPORTER
store = Store(sys.argv[2], Path(sys.argv[3]))
t, cpu = time.perf_counter(), time.process_time()
report = IMPORTER.import_path(Path(sys.argv[1]), store, person="bench")
# CPU time of all threads (the writer thread's too).
print(time.perf_counter() - t, report.measurements, len(report.activity_ids),
      peak_kb(), time.process_time() - cpu)
"""


def run(code: str, *args: str) -> list[float]:
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"benchmark process failed:\n{out.stderr}")
    return [float(x) for x in out.stdout.split()]


def fresh_db(url: str | None, work: Path, i: int) -> str:
    if url is None:
        return f"sqlite:///{work / f'bench{i}.db'}"
    import sqlalchemy as sa

    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=200, help="size of the generated export.xml")
    ap.add_argument("--repeat", type=int, default=1, help="alternate bare/import this many times")
    ap.add_argument("--db", help="database URL (default: a fresh SQLite file per run); its schema is wiped")
    ap.add_argument("--dir", type=Path, help="work folder (default: a temporary one)")
    args = ap.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="fithub-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    export = work / "export.xml"
    sys.path.insert(0, str(ROOT / "fixtures"))
    import make_apple_health as gen

    t = time.perf_counter()
    truth = gen.write_export(export, mb=args.mb, stray=False)  # no stray controls: lxml alone must read it
    size = export.stat().st_size
    print(f"generated {size / 1e6:.0f} MB, {truth.records:,} records, {truth.workouts} workouts with "
          f"{truth.routes} routes in {time.perf_counter() - t:.0f} s ({export})")
    bare, plain, full = [], [], []
    for i in range(args.repeat):
        bare.append(run(BARE, str(export)))
        plain.append(run(PLAIN, str(export), str(work / f"plain{i}.db")))
        full.append(run(IMPORT, str(export), fresh_db(args.db, work, i), str(work / f"home{i}")))
    b_time = statistics.median(b[0] for b in bare)
    p_time = statistics.median(p[0] for p in plain)
    f_time = statistics.median(f[0] for f in full)
    rows = truth.records + truth.correlations + truth.activity_summaries
    mb = size / 1e6
    result = {
        "size_mb": round(mb, 1),
        "records": rows,
        "database": "sqlite" if args.db is None else "postgresql",
        "bare_s": round(b_time, 2), "bare_mb_s": round(mb / b_time, 1), "bare_records_s": round(rows / b_time),
        "bare_peak_mb": round(max(b[2] for b in bare) / 1024),
        "plain_sqlite_s": round(p_time, 2), "plain_sqlite_mb_s": round(mb / p_time, 1),
        "plain_sqlite_ratio": round(b_time / p_time, 3),
        "import_s": round(f_time, 2), "import_mb_s": round(mb / f_time, 1), "import_records_s": round(rows / f_time),
        "import_peak_mb": round(max(f[3] for f in full) / 1024),
        "ratio": round(b_time / f_time, 3),
        # On a shared machine wall time depends on the neighbours; CPU seconds much less.
        "bare_cpu_s": round(statistics.median(b[3] for b in bare), 2),
        "import_cpu_s": round(statistics.median(f[4] for f in full), 2),
        "cpu_ratio": round(statistics.median(b[3] for b in bare) / statistics.median(f[4] for f in full), 3),
        "stored_records": int(full[-1][1]), "activities": int(full[-1][2]),
        "runs": {"bare_s": [round(b[0], 2) for b in bare], "plain_sqlite_s": [round(p[0], 2) for p in plain],
                 "import_s": [round(f[0], 2) for f in full]},
    }
    print(f"bare lxml iterparse: {result['bare_s']} s, {result['bare_mb_s']} MB/s, {result['bare_records_s']:,} records/s, "
          f"peak {result['bare_peak_mb']} MB")
    print(f"lxml + plain sqlite3 inserts (reference): {result['plain_sqlite_s']} s, {result['plain_sqlite_mb_s']} MB/s, "
          f"{result['plain_sqlite_ratio']}x")
    print(f"fithub import ({result['database']}): {result['import_s']} s, {result['import_mb_s']} MB/s, "
          f"{result['import_records_s']:,} records/s, peak {result['import_peak_mb']} MB")
    print(f"ratio import/bare speed: {result['ratio']}x (CPU seconds: bare {result['bare_cpu_s']}, "
          f"import {result['import_cpu_s']}, ratio {result['cpu_ratio']}x)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
