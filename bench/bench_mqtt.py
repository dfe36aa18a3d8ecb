"""MQTT ingest benchmark: committed messages/s and publish-to-commit latency.

    .venv/bin/python bench/bench_mqtt.py [--seconds 6] [--rate 5000] [--devices 200] [--quick]
        [--only bare,single,batch,pg] [--publishers N] [--pg-live] [--py-spy PREFIX] [--json FILE]

Every part runs in its own process, on one private Mosquitto (persistence off,
no queue limit) started for the run:

- publishers (``--publishers``, default 1; ``--pg-publishers``, default 2, for the
  PostgreSQL runs): ``--devices`` simulated devices, round-robin, split between
  the publishers, each message stamped with its publish time (the samples' ``t``,
  epoch milliseconds), paced to ``--rate`` messages/s in all for ``--seconds``;
- the receiver under test, one of:
  ``bare``: a plain paho-mqtt QoS 1 subscriber (acks on receipt, stores nothing):
  the baseline;
  ``hub``: the fithub ``mqtt`` source (MqttSource) committing to a fresh SQLite or
  PostgreSQL database and acknowledging after each commit.

Latency is commit time (receive time for ``bare``) minus the publish time in the
message; the committed rate is messages / (last commit - first publish). Each row
also shows the receiver's CPU per message (all its threads, from
``time.process_time``) and the machine's 1-minute load average, since the figures
depend on what else runs. Runs:

1. bare subscriber, single-sample messages at --rate;
2. hub on SQLite, single-sample messages at --rate;
3. hub on SQLite, batches of --batch samples per message (samples/s), offered at
   --batch-rate (default 1,200 x 50 = 60,000 samples/s, above the 50,000 target);
4. hub on PostgreSQL, one process then two processes on one shared subscription.
   By default the receivers subscribe, disconnect (the broker keeps their
   sessions), the whole --pg-messages are published, and the receivers come back
   for the backlog: the rate is messages / (last commit - reconnect), what the
   receivers can take without the publishers competing for the same CPUs (the
   latency figures are then meaningless). ``--pg-live``: receivers connected,
   publishers unpaced.

PostgreSQL: the local server (FITHUB_TEST_PG overrides the admin URL); a scratch
database is created and dropped. Skip run 4 with --no-pg. ``--py-spy PREFIX``
profiles every hub receiver with py-spy (installed separately) into
``PREFIX-<n>.txt`` (folded stacks).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

PG_ADMIN = os.environ.get("FITHUB_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


# -- publisher process -------------------------------------------------------------


def publish(args) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv5)
    client.max_inflight_messages_set(2000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", args.port)
    client.loop_start()
    total = args.messages
    # This process's devices: every --publishers-th one, from --first-device.
    devices = list(range(args.first_device, args.devices, args.publishers))
    topics = [f"{args.prefix}/dev{d:03d}/samples" for d in range(args.devices)]
    seq = [0] * args.devices
    infos = []
    start = time.time()
    t0 = time.monotonic()
    for i in range(total):
        if args.rate:
            wait = t0 + i / args.rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        d = devices[i % len(devices)]
        now_ms = int(time.time() * 1000)
        # The bytes json.dumps(body, separators=(",", ":")) would give, written
        # directly: at 5,000 messages/s json.dumps was this process's bottleneck.
        s = seq[d]
        if args.batch == 1:
            body = f'{{"v":1,"t":{now_ms},"seq":{s},"hr":{120 + s % 60},"power":{200 + s % 150}}}'
            seq[d] += 1
        else:
            n = args.batch
            body = '{"v":1,"samples":[' + ",".join(
                f'{{"t":{now_ms - (n - 1 - j)},"seq":{s + j},"hr":{120 + j % 60},"power":210}}' for j in range(n)
            ) + "]}"
            seq[d] += n
        infos.append(client.publish(topics[d], body, qos=1))
    for info in infos:
        info.wait_for_publish(60)
    end = time.time()
    client.disconnect()
    client.loop_stop()
    print(json.dumps({"start": start, "end": end, "sent": total}), flush=True)


# -- receiver processes ----------------------------------------------------------


def _publish_time(payload: bytes) -> float:
    body = json.loads(payload)
    if "samples" in body:
        return max(s["t"] for s in body["samples"]) / 1000.0
    return body["t"] / 1000.0


def bare(args) -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    got: list[tuple[float, bytes]] = []
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-bare-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv5)
    client.on_message = lambda c, u, m: got.append((time.time(), m.payload))
    ready = threading.Event()
    client.on_subscribe = lambda *a: ready.set()
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{args.prefix}/+/samples", qos=1)
    client.connect("127.0.0.1", args.port)
    client.loop_start()
    ready.wait(10)
    print("READY", flush=True)
    cpu = time.process_time()
    sys.stdin.readline()  # "STOP"
    cpu = time.process_time() - cpu
    client.disconnect()
    client.loop_stop()
    _report([(t, [p]) for t, p in got], extra={"cpu_s": cpu})


def hub(args) -> None:
    from connectors.mqtt.source import MqttSource
    from hub.plugins import Hub
    from hub.storage.repository import Store

    logging.basicConfig(level=logging.WARNING)
    home = Path(args.home)
    store = Store(args.db, home)
    plugin_hub = Hub(store=store, home=home, log=logging.getLogger("bench"))
    options = {
        "port": args.port, "subscriptions": {f"{args.prefix}/+/samples": "fithub"}, "session_gap_s": 3600,
        "batch_max": args.batch_max, "batch_ms": args.batch_ms, "shared_group": args.group,
        "client_id": f"bench-hub-{uuid.uuid4().hex[:8]}", "session_expiry_s": 60,
    }
    source = MqttSource("bench", options, plugin_hub)
    commits: list[tuple[float, list[bytes]]] = []
    received: list[tuple[float, bytes]] = []  # (receive wall time, payload) of a 1-in-10 sample

    def on_commit(batch, t) -> None:
        commits.append((t, [m.payload for m in batch]))
        received.extend((m.received_at.timestamp(), m.payload) for m in batch[::10])

    source.start()
    source.broker.connected.wait(10)
    time.sleep(0.3)  # the SUBACK
    go = None
    if args.backlog:
        # Subscribed; now away (the broker keeps the session and queues for it)
        # until the orchestrator has published everything, then back with the
        # same client id to take the backlog.
        source.stop(5)
        print("READY", flush=True)
        sys.stdin.readline()  # "GO"
        go = time.time()
        source = MqttSource("bench", options, plugin_hub)
        source.start()
    else:
        print("READY", flush=True)
    source.ingestor.on_commit = on_commit
    cpu = time.process_time()
    threads0 = _thread_cpu()
    sys.stdin.readline()
    cpu = time.process_time() - cpu  # this process's CPU (every thread) while the messages came in
    threads = {k: round(v - threads0.get(k, 0.0), 2) for k, v in _thread_cpu().items()}
    source.stop(10)
    store.close()
    to_receive = sorted(t - _publish_time(p) for t, p in received)
    _report(commits, extra={"samples_new": source.stats.samples_new, "batches": source.stats.batches, "cpu_s": cpu, "go": go, "thread_cpu_s": threads,
                            "receive_p50_ms": 1000 * to_receive[len(to_receive) // 2] if to_receive else None})


def _thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) of each of this process's threads, by name
    (Linux /proc; empty elsewhere): where a receiver's CPU goes."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    names = {t.native_id: t.name.split("-bench")[0].split("-bench-hub")[0] for t in threading.enumerate()}
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").glob("*"):
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = names.get(int(task.name), "other")
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return out


def _report(commits: list[tuple[float, list[bytes]]], extra: dict | None = None) -> None:
    latencies = [t - _publish_time(p) for t, payloads in commits for p in payloads]
    out = {
        "messages": len(latencies),
        "last": max((t for t, _ in commits), default=None),
        "latencies": latencies,
        **(extra or {}),
    }
    print(json.dumps(out), flush=True)


# -- orchestration ---------------------------------------------------------------


def _me(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def _start_receiver(kind: str, port: int, prefix: str, **kw) -> subprocess.Popen:
    cmd = _me(kind, "--port", str(port), "--prefix", prefix)
    for k, v in kw.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline().strip()
    if line != "READY":
        raise SystemExit(f"{kind} receiver did not start: {line!r}")
    if kind == "hub" and PYSPY_OUT:
        # Sample the receiver from outside (every thread, native waits left out),
        # folded stacks in PYSPY_OUT-<n>.txt; py-spy must be installed.
        _SPIES.append(subprocess.Popen(
            [str(Path(sys.executable).with_name("py-spy")), "record", "--rate", "200", "--threads", "--format", "raw",
             "--output", f"{PYSPY_OUT}-{len(_SPIES) + 1}.txt", "--pid", str(proc.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
    return proc


PYSPY_OUT = ""  # --py-spy
_SPIES: list[subprocess.Popen] = []


def _publish(port: int, prefix: str, *, messages: int, rate: float, devices: int, batch: int, publishers: int = 1) -> dict:
    """Run ``publishers`` publisher processes, each with its share of the devices,
    messages and rate; returns the first start, the last end and the total sent."""
    procs = []
    for k in range(publishers):
        share = messages // publishers + (1 if k < messages % publishers else 0)
        procs.append(subprocess.Popen(
            _me("publish", "--port", str(port), "--prefix", prefix, "--messages", str(share),
                "--rate", str(rate / publishers), "--devices", str(devices), "--batch", str(batch),
                "--publishers", str(publishers), "--first-device", str(k)),
            stdout=subprocess.PIPE, text=True, cwd=ROOT,
        ))
    reports = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"publisher failed with exit code {proc.returncode}")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return {"start": min(r["start"] for r in reports), "end": max(r["end"] for r in reports),
            "sent": sum(r["sent"] for r in reports)}


def _collect(receivers: list[subprocess.Popen], expect: int, timeout: float, count_db=None) -> list[dict]:
    """Wait until ``expect`` messages are in (by the database when it can tell, else
    a pause), then stop the receivers and read their reports."""
    deadline = time.monotonic() + timeout
    if count_db is not None:
        while count_db() < expect and time.monotonic() < deadline:
            time.sleep(0.2)
    else:
        time.sleep(min(3.0, timeout))
    results = []
    for proc in receivers:
        proc.stdin.write("STOP\n")
        proc.stdin.flush()
    for proc in receivers:
        out, _ = proc.communicate(timeout=120)
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _summary(name: str, pub: dict, results: list[dict], samples_per_message: int) -> dict:
    latencies = sorted(x for r in results for x in r["latencies"])
    n = len(latencies)
    last = max(r["last"] for r in results if r["last"])
    # A backlog run counts from when the receivers came back for the queued messages.
    first = min((r["go"] for r in results if r.get("go")), default=pub["start"])
    span = last - first
    row = {
        "run": name,
        "sent": pub["sent"],
        "received": n,
        "offered_msg_s": pub["sent"] / max(1e-9, pub["end"] - pub["start"]),
        "committed_msg_s": n / span,
        "samples_s": n * samples_per_message / span,
        "p50_ms": 1000 * latencies[n // 2] if n else None,
        "p99_ms": 1000 * latencies[min(n - 1, int(n * 0.99))] if n else None,
        "per_process": [r["messages"] for r in results],
        "receive_p50_ms": [r.get("receive_p50_ms") for r in results],
        "cpu_s": [r.get("cpu_s") for r in results],
        "thread_cpu_s": [r.get("thread_cpu_s") for r in results],
        "transactions": [r.get("batches") for r in results],
        "load_avg_1m": os.getloadavg()[0],
    }
    cpu_us = 1e6 * sum(c for c in row["cpu_s"] if c) / max(1, n)
    print(
        f"{name:<44} sent {row['sent']:>7}  got {n:>7}  offered {row['offered_msg_s']:>8.0f} msg/s  "
        f"committed {row['committed_msg_s']:>8.0f} msg/s ({row['samples_s']:>8.0f} samples/s)  "
        f"p50 {row['p50_ms']:>7.1f} ms  p99 {row['p99_ms']:>7.1f} ms  per process {row['per_process']}  "
        f"receiver CPU {cpu_us:.0f} us/msg  load {row['load_avg_1m']:.1f}"
        + (f"  (publish-to-receive p50 {row['receive_p50_ms']} ms)" if row["receive_p50_ms"][0] is not None else ""),
        flush=True,
    )
    return row


def _live_count(url: str):
    import sqlalchemy as sa

    engine = sa.create_engine(url)

    def count() -> int:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM live_samples")).scalar_one()

    return count


def run(args) -> None:
    from mqtt_util import PrivateBroker

    tmp = Path(tempfile.mkdtemp(prefix="bench_mqtt_"))
    broker = PrivateBroker(tmp / "broker")
    # Persistence would only add disk writes the baseline does not have here.
    broker.conf.write_text(broker.conf.read_text().replace("persistence true", "persistence false"))
    broker.start()
    port = broker.port
    seconds, rate, devices = args.seconds, args.rate, args.devices
    results = []
    only = set(args.only.split(",")) if args.only else {"bare", "single", "batch", "pg"}
    pubs = args.publishers
    try:
        # 1. baseline
        if "bare" in only:
            prefix = f"b{uuid.uuid4().hex[:8]}"
            recv = [_start_receiver("bare", port, prefix)]
            pub = _publish(port, prefix, messages=int(rate * seconds), rate=rate, devices=devices, batch=1, publishers=pubs)
            results.append(_summary("bare paho QoS 1 subscriber (single samples)", pub, _collect(recv, 0, 3), 1))

        # 2. hub, SQLite, single samples
        if "single" in only:
            prefix = f"h{uuid.uuid4().hex[:8]}"
            url = f"sqlite:///{tmp / 'single.db'}"
            recv = [_start_receiver("hub", port, prefix, db=url, home=tmp / "h1", batch_max=args.batch_max, batch_ms=args.batch_ms)]
            n = int(rate * seconds)
            pub = _publish(port, prefix, messages=n, rate=rate, devices=devices, batch=1, publishers=pubs)
            results.append(_summary("hub, SQLite, single-sample messages", pub, _collect(recv, n, 120, _live_count(url)), 1))

        # 3. hub, SQLite, batches
        if "batch" in only:
            prefix = f"h{uuid.uuid4().hex[:8]}"
            url = f"sqlite:///{tmp / 'batch.db'}"
            recv = [_start_receiver("hub", port, prefix, db=url, home=tmp / "h2", batch_max=args.batch_max, batch_ms=args.batch_ms)]
            msg_rate = args.batch_rate
            n = int(msg_rate * seconds)
            pub = _publish(port, prefix, messages=n, rate=msg_rate, devices=devices, batch=args.batch, publishers=pubs)
            results.append(_summary(f"hub, SQLite, batches of {args.batch} samples", pub,
                                    _collect(recv, n * args.batch, 120, _live_count(url)), args.batch))

        # 4. PostgreSQL: one process, then two on a shared subscription
        if "pg" in only and not args.no_pg:
            results += _postgres_runs(args, port, tmp)
    finally:
        broker.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def _postgres_runs(args, port: int, tmp: Path) -> list[dict]:
    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    rows = []
    for processes in (1, 2):
        name = f"fithub_bench_mqtt_{os.getpid()}_{processes}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
        try:
            from hub.storage.repository import Store

            Store(url, tmp / "pg-migrate").close()  # migrate once, before the receivers race to
            prefix = f"p{uuid.uuid4().hex[:8]}"
            group = "bench" if processes > 1 else ""
            backlog = {} if args.pg_live else {"backlog": 1}
            recv = [
                _start_receiver("hub", port, prefix, db=url, home=tmp / f"pg{processes}-{i}", group=group,
                                batch_max=args.batch_max, batch_ms=args.batch_ms, **backlog)
                for i in range(processes)
            ]
            n = int(args.pg_messages)
            pub = _publish(port, prefix, messages=n, rate=0, devices=args.devices, batch=1, publishers=args.pg_publishers)
            if args.pg_live:
                how = " (unpaced)"
            else:
                how = " (backlog)"
                for proc in recv:  # every message is queued on the broker: take it
                    proc.stdin.write("GO\n")
                    proc.stdin.flush()
            label = "hub, PostgreSQL, 1 process" if processes == 1 else f"hub, PostgreSQL, {processes} processes, shared sub"
            rows.append(_summary(label + how, pub, _collect(recv, n, 300, _live_count(url)), 1))
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode")
    p = sub.add_parser("publish")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--messages", type=int, required=True)
    p.add_argument("--rate", type=float, default=0)
    p.add_argument("--devices", type=int, default=200)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--publishers", type=int, default=1)
    p.add_argument("--first-device", type=int, default=0)
    for mode in ("bare", "hub"):
        r = sub.add_parser(mode)
        r.add_argument("--port", type=int, required=True)
        r.add_argument("--prefix", required=True)
        r.add_argument("--db", default="")
        r.add_argument("--home", default="")
        r.add_argument("--group", default="")
        r.add_argument("--batch-max", type=int, default=500)
        r.add_argument("--batch-ms", type=int, default=50)
        r.add_argument("--backlog", type=int, default=0, help="subscribe, go away, come back at GO for the queue")
    ap.add_argument("--seconds", type=float, default=6.0, help="length of each paced run")
    ap.add_argument("--rate", type=float, default=5000, help="single-sample messages/s offered")
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--batch", type=int, default=50, help="samples per message in the batch run")
    ap.add_argument("--batch-rate", type=float, default=1200,
                    help="batch messages/s offered (1,200 x 50 = 60,000 samples/s: above the 50,000 target, so the run shows what is taken)")
    ap.add_argument("--batch-max", type=int, default=500)
    ap.add_argument("--batch-ms", type=int, default=50)
    ap.add_argument("--pg-messages", type=int, default=20000)
    ap.add_argument("--publishers", type=int, default=1, help="publisher processes for the paced runs")
    ap.add_argument("--pg-live", action="store_true",
                    help="PostgreSQL runs with the receivers taking the messages as they are published (unpaced), "
                         "instead of a backlog published first")
    ap.add_argument("--pg-publishers", type=int, default=2,
                    help="publisher processes for the unpaced PostgreSQL runs (one Python publisher cannot feed two hubs)")
    ap.add_argument("--py-spy", default="", help="profile each hub receiver with py-spy into <this>-<n>.txt")
    ap.add_argument("--only", default="", help="comma-separated runs to do: bare,single,batch,pg (default all)")
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--quick", action="store_true", help="short runs (2 s, 5,000 PostgreSQL messages)")
    ap.add_argument("--json", default="", help="also write the results here")
    args = ap.parse_args()
    if args.mode == "publish":
        publish(args)
    elif args.mode == "bare":
        bare(args)
    elif args.mode == "hub":
        hub(args)
    else:
        if args.quick:
            args.seconds, args.pg_messages = 2.0, 5000
        global PYSPY_OUT
        PYSPY_OUT = args.py_spy
        run(args)
        for spy in _SPIES:
            spy.wait(30)


if __name__ == "__main__":
    main()
