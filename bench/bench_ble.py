"""BLE notification-to-event latency and CPU use: 4 sensors notifying at 4 Hz.

    .venv/bin/python bench/bench_ble.py [--seconds 20] [--rate 4]

Four virtual peripherals (strap, power meter, speed/cadence sensor, FTMS trainer)
on a bumble LocalLink, read by the real sensor manager and recorder through the
bumble transport. Printed:

- latency from the peripheral's ``notify_subscribers`` call to the reading reaching
  the recorder (the manager's event), p50/p99/max, in ms;
- the manager's own work per notification (decode + deliver), p50/p99, in us;
- CPU of the whole process (peripherals, virtual controllers and link included,
  so an upper bound for fithub's share) as a percentage of one core, and the
  manager's share of it.

Without BlueZ this cannot measure the kernel and D-Bus hops of a real adapter;
``tests/ble_vm`` exercises that path for correctness, not speed (its VM is emulated).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections import defaultdict, deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bumble.link import LocalLink  # noqa: E402

from drivers.ble.bumble_transport import BumbleTransport  # noqa: E402
from drivers.ble.manager import ManagerSettings, SensorManager, parse_sensors  # noqa: E402
from drivers.ble.recorder import Recorder  # noqa: E402
from drivers.ble.virtual import HeartRateStrap, PowerMeter, SpeedCadenceSensor, Trainer, add_device  # noqa: E402


class TimedManager(SensorManager):
    """The real manager, with the time spent in its notification handler recorded."""

    work_s: list[float]

    def _receiver(self, characteristic, decoder, state, generation):
        inner = super()._receiver(characteristic, decoder, state, generation)

        def receive(data: bytes) -> None:
            t = time.perf_counter()
            inner(data)
            self.work_s.append(time.perf_counter() - t)

        return receive


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(seconds: float, rate_hz: float) -> dict:
    link = LocalLink()
    addresses = [f"C1:00:00:00:00:0{i}" for i in range(1, 5)]
    sensors = [
        HeartRateStrap(link, addresses[0]),
        PowerMeter(link, addresses[1]),
        SpeedCadenceSensor(link, addresses[2]),
        Trainer(link, addresses[3]),
    ]
    for sensor in sensors:
        await sensor.start()
    central = add_device(link, "C0:00:00:00:00:00", "fithub")
    await central.power_on()

    sent: dict[str, deque] = defaultdict(deque)
    latencies: list[float] = []
    recorder = Recorder(lambda *a, **k: None, person="bench", idle_gap_s=3600)

    def on_reading(reading) -> None:
        recorder.reading(reading)  # the event's consumer: the session tracker and live values
        queue = sent[reading.sensor]
        if queue:
            latencies.append(time.perf_counter() - queue.popleft())

    manager = TimedManager(BumbleTransport(central), parse_sensors(addresses), on_reading=on_reading, settings=ManagerSettings())
    manager.work_s = []
    stop = asyncio.Event()
    task = asyncio.create_task(manager.run(stop))
    while sum(s.connected for s in manager.sensors.values()) < 4:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.5)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    period = 1 / rate_hz
    next_at = time.perf_counter()
    ticks = 0
    while time.perf_counter() - wall0 < seconds:
        for i, sensor in enumerate(sensors):
            # Spread the four sensors over the period, as independent devices are.
            await asyncio.sleep(max(0.0, next_at + i * period / 4 - time.perf_counter()))
            sent[sensor.address].append(time.perf_counter())
            await sensor.send(time.time())
        ticks += 1
        next_at += period
    await asyncio.sleep(0.3)
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    stop.set()
    await task
    return {
        "notifications": ticks * len(sensors),
        "events": len(latencies),
        "latency_ms": [1000 * pct(latencies, q) for q in (0.5, 0.99)] + [1000 * max(latencies)],
        "work_us": [1e6 * pct(manager.work_s, q) for q in (0.5, 0.99)],
        "work_mean_us": 1e6 * statistics.fmean(manager.work_s),
        "cpu_pct": 100 * cpu / wall,
        "manager_cpu_pct": 100 * sum(manager.work_s) / wall,
        "wall_s": wall,
        "bad": sum(s.bad_packets for s in manager.sensors.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=4.0, help="notifications per second per sensor")
    args = parser.parse_args()
    r = asyncio.run(run(args.seconds, args.rate))
    print(f"4 sensors x {args.rate:g} Hz for {r['wall_s']:.1f} s: {r['notifications']} notifications, {r['events']} events, {r['bad']} bad packets")
    p50, p99, worst = r["latency_ms"]
    print(f"notification -> event latency: p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {worst:.2f} ms")
    print(f"manager work per notification (decode + deliver): p50 {r['work_us'][0]:.0f} us, p99 {r['work_us'][1]:.0f} us, mean {r['work_mean_us']:.0f} us")
    print(f"CPU: whole process {r['cpu_pct']:.1f} % of one core (virtual peripherals and link included); "
          f"manager's handler {r['manager_cpu_pct']:.3f} %")


if __name__ == "__main__":
    main()
