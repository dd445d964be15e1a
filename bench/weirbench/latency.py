"""Section "latency": time from produce to object visible, at a low and a
high produce rate, with the minimum deliver_time_interval (30 s) and a small
flush_size."""

from __future__ import annotations

import threading
import time

from confluent_kafka import Producer

from harness.tasks import obs_task, sink_config

from .context import Context
from .services import UNCAPPED_SPECIFICATION

PARTITIONS = 4
DELIVER_TIME_INTERVAL = 30
# Watcher poll period: the resolution of every latency below.
POLL_SECONDS = 0.1


def rate_runs(quick: bool) -> list[dict]:
    """Return the runs as rate (records/s), seconds and flush_size.

    The record count is a multiple of PARTITIONS * flush_size, so the chunks
    of the high-rate run all close by count. In the full run the low rate
    fills a chunk slower than the delivery interval, so its chunks close by
    time.
    """
    if quick:
        return [
            {"name": "low", "rate": 10, "seconds": 8, "flush_size": 10},
            {"name": "high", "rate": 500, "seconds": 6, "flush_size": 10},
        ]
    return [
        {"name": "low", "rate": 10, "seconds": 120, "flush_size": 100},
        {"name": "high", "rate": 2000, "seconds": 60, "flush_size": 100},
    ]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


class PacedProducer:
    """Produce `count` records round-robin over the partitions at `rate` per
    second, keeping the wall-clock send time of each delivered record."""

    def __init__(self, bootstrap: str, topic: str, rate: float, count: int, value_size: int = 200):
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "linger.ms": 1, "acks": "all", "enable.idempotence": True}
        )
        self.topic = topic
        self.rate = rate
        self.count = count
        self.value = b"x" * value_size
        self.sent_at: dict[tuple[int, int], float] = {}
        self.errors: list[str] = []

    def run(self) -> None:
        started = time.monotonic()
        for sequence in range(self.count):
            delay = started + sequence / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent = time.time()

            def on_delivery(error, message, sent=sent):
                if error is not None:
                    self.errors.append(str(error))
                else:
                    self.sent_at[(message.partition(), message.offset())] = sent

            self.producer.produce(
                self.topic,
                value=self.value,
                partition=sequence % PARTITIONS,
                timestamp=int(sent * 1000),
                on_delivery=on_delivery,
            )
            self.producer.poll(0)
        remaining = self.producer.flush(60)
        if remaining or self.errors:
            raise AssertionError(f"{remaining} records undelivered, errors {self.errors[:3]}")


def run_latency(ctx: Context) -> dict:
    connector = ctx.connector(2, UNCAPPED_SPECIFICATION, "bench.mem256")
    rows = []
    for spec in rate_runs(ctx.quick):
        topic = ctx.kafka.unique_topic(f"latency-{spec['name']}")
        ctx.kafka.create_topic(topic, PARTITIONS)
        bucket, endpoint, watcher, _ = ctx.destination("local")
        sink = sink_config(
            bucket,
            "bench",
            endpoint,
            flush_size=spec["flush_size"],
            deliver_time_interval=DELIVER_TIME_INTERVAL,
            consumer_strategy="earliest",
        )
        created = ctx.weir.api.create_task(connector.instance_id, obs_task(topic, sink)).json()
        task_id = created["id"]
        ctx.weir.api.wait_task_status(connector.instance_id, task_id, "RUNNING")
        count = spec["rate"] * spec["seconds"]
        producer = PacedProducer(ctx.kafka.bootstrap, topic, spec["rate"], count)
        ctx.log(f"latency: {spec['name']} rate {spec['rate']} records/s for {spec['seconds']} s")
        thread = threading.Thread(target=producer.run, name="latency-producer", daemon=True)
        thread.start()
        deadline = time.monotonic() + spec["seconds"] + 3 * DELIVER_TIME_INTERVAL + 30
        covered = 0
        while time.monotonic() < deadline:
            for chunk in watcher.poll():
                covered += watcher.last_offset(chunk) - chunk.first_offset + 1
            if covered >= count and not thread.is_alive():
                break
            time.sleep(POLL_SECONDS)
        thread.join(timeout=60)
        latencies = []
        for chunk in watcher.chunks.values():
            for offset in range(chunk.first_offset, watcher.last_offset(chunk) + 1):
                sent = producer.sent_at.get((chunk.partition, offset))
                if sent is not None:
                    latencies.append(chunk.seen_at - sent)
        if len(latencies) < count:
            raise AssertionError(f"latency {spec['name']}: {len(latencies)} of {count} records seen in objects")
        row = {
            **spec,
            "records": count,
            "partitions": PARTITIONS,
            "deliver_time_interval": DELIVER_TIME_INTERVAL,
            "p50_seconds": percentile(latencies, 0.5),
            "p99_seconds": percentile(latencies, 0.99),
            "max_seconds": max(latencies),
            "objects": len(watcher.chunks),
        }
        rows.append(row)
        ctx.log(f"latency: {spec['name']}: p50 {row['p50_seconds']:.2f} s, p99 {row['p99_seconds']:.2f} s")
        ctx.weir.api.delete_task(connector.instance_id, task_id)
        ctx.drop_destination("local", bucket, None)
    return {"rows": rows, "targets": [], "poll_seconds": POLL_SECONDS}
