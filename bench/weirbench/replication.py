"""Section "replication": KAFKA_REPLICATOR_SOURCE throughput between two
tansu brokers, without and with added link latency.

A second broker (the source, SQLite on tmpfs like the main one) holds a
backlog of 1 KiB records in 12 partitions. A `pull` task with `task_num` 2
copies it to a fresh topic on the main broker (the target, the instance's own
cluster), and Weir's clock runs from the first ShowConnectorTask that returns
RUNNING to the poll (every 100 ms) at which every target partition's high
watermark has reached the source's.

The baseline is the slower of two rdkafka_performance runs, because a copy
can go no faster than either end: `-C` reading the source topic with the
replicator consumer's settings, and `-P` writing as many records of the same
size to a fresh target topic with the replicator producer's settings.

Latency comes from delay_proxy.py in front of the source broker, which then
advertises the proxy's port, so every connection to the source (metadata
included) crosses the proxy. The baseline `-C` reads through the same proxy
at the same delay. The target stays local, so `-P` sees no delay.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition

from harness.kafka import Kafka, TansuBroker
from harness.procs import ManagedProcess, free_port, wait_until
from harness.tasks import task_name

from . import system
from .backlog import Backlog, produce_backlog
from .context import MiB, Context, rdkafka_consume, rdkafka_produce
from .dump import THROUGHPUT_PROFILE, rates
from .services import FETCH_SETTINGS, SESSION_TIMEOUT_MS, UNCAPPED_SPECIFICATION

PARTITIONS = 12
RECORD_SIZE = 1024
TASK_NUM = 2
# Round-trip times added by the proxy, in ms; None is the direct path.
FULL_RTTS_MS = (None, 0, 20, 100)
QUICK_RTTS_MS = (None, 100)
DEFAULT_MIB = 256
QUICK_MIB = 4
WATERMARK_POLL_SECONDS = 0.1
# Fraction of the baseline that Weir must reach at every round-trip time.
REPLICATION_TARGET = 0.8
# Fraction of its rate through the proxy at 0 ms that Weir must keep at the
# largest round-trip time.
LATENCY_TARGET = 0.8

# The settings of the replicator's consumer (`Worker::consumer` in
# src/replicator/flow.rs) as the benchmark nodes run it: the fetch settings
# of the nodes' `kafka` table, which override flow.rs's own fetch sizes, and
# the prefetch queue of the node profile (1/16 of its 1 GiB budget). The
# baseline consumer reads with the same ones.
REPLICATOR_CONSUMER_SETTINGS = {
    **FETCH_SETTINGS,
    "queued.max.messages.kbytes": "65536",
    "session.timeout.ms": str(SESSION_TIMEOUT_MS),
}
# The settings of the replicator's producer (`Worker::producer_config`).
REPLICATOR_PRODUCER_SETTINGS = {
    "enable.idempotence": "true",
    "compression.type": "none",
    "linger.ms": "20",
    "batch.size": "1048576",
    "queue.buffering.max.messages": "100000",
    "queue.buffering.max.kbytes": "262144",
    "message.timeout.ms": "300000",
}

DELAY_PROXY = Path(__file__).with_name("delay_proxy.py")


def replicator_body(topic: str, peer_bootstrap: str, target_topic: str) -> dict:
    """Return a CreateConnectorTask body that pulls `topic` from the peer
    into `target_topic` on the instance's cluster, from `earliest`."""
    return {
        "task_name": task_name("bench-replicator"),
        "topics": topic,
        "source_type": "KAFKA_REPLICATOR_SOURCE",
        "sink_type": "NONE",
        "source_task": {
            "current_cluster_name": "target",
            "cluster_name": "source",
            "user_name": "",
            "password": "",
            "sasl_mechanism": "PLAIN",
            "instance_id": "",
            "bootstrap_servers": peer_bootstrap,
            "security_protocol": "PLAINTEXT",
            "direction": "pull",
            "sync_consumer_offsets_enabled": False,
            "replication_factor": 1,
            "task_num": TASK_NUM,
            "rename_topic_enabled": False,
            "provenance_header_enabled": False,
            "consumer_strategy": "earliest",
            "compression_type": "none",
            "topics_mapping": f"{topic}:{target_topic}",
        },
    }


class SourceCluster:
    """The source broker, reached either directly or through a delay proxy.

    The broker keeps one port and one SQLite database; switching between the
    two paths restarts it with another advertised port.
    """

    def __init__(self, ctx: Context):
        self.tools = ctx.tools
        self.log_dir = ctx.work_dir / "replication-source"
        shm = Path("/dev/shm")
        self.data_dir = Path(tempfile.mkdtemp(prefix="weir-bench-source-", dir=shm if shm.is_dir() else ctx.work_dir))
        self.port = free_port()
        self.proxy_port = free_port()
        self.broker: TansuBroker | None = None
        self.proxy: ManagedProcess | None = None
        self.one_way_ms: float | None = None
        self.proxied = False

    @property
    def bootstrap(self) -> str:
        """The address clients of the current path connect to."""
        return f"127.0.0.1:{self.proxy_port if self.proxied else self.port}"

    def serve(self, rtt_ms: float | None) -> None:
        """Serve the source directly (rtt_ms None) or through the proxy with
        rtt_ms / 2 of delay in each direction."""
        proxied = rtt_ms is not None
        self.stop_proxy()
        if proxied:
            self.start_proxy(rtt_ms / 2)
        if self.broker is None or proxied != self.proxied:
            if self.broker is not None:
                self.broker.stop()
            advertised = self.proxy_port if proxied else self.port
            self.broker = TansuBroker(
                self.tools.tansu,
                self.log_dir,
                storage=self.data_dir / "source.db",
                port=self.port,
                advertised_port=advertised,
            )
            self.proxied = proxied
            self.broker.start(ready_bootstrap=self.bootstrap)
        self.proxied = proxied

    def start_proxy(self, one_way_ms: float) -> None:
        log_path = self.log_dir / f"delay-proxy-{one_way_ms:g}ms.log"
        self.proxy = ManagedProcess(
            "delay-proxy",
            [
                sys.executable,
                DELAY_PROXY,
                "--port",
                str(self.proxy_port),
                "--upstream-port",
                str(self.port),
                "--delay-ms",
                str(one_way_ms),
            ],
            log_path,
        ).start()
        self.one_way_ms = one_way_ms

        def listening() -> bool:
            if not self.proxy.alive():
                raise AssertionError(f"delay proxy exited:\n{self.proxy.log_tail()}")
            return "listening on" in log_path.read_text(errors="replace")

        wait_until(listening, timeout=30, interval=0.05, message=f"delay proxy on port {self.proxy_port}")

    def stop_proxy(self) -> None:
        if self.proxy is not None:
            self.proxy.stop(grace=5)
            self.proxy = None
            self.one_way_ms = None

    def proxy_pids(self) -> list[int]:
        return [self.proxy.pid] if self.proxy is not None else []

    def stop(self) -> None:
        self.stop_proxy()
        if self.broker is not None:
            self.broker.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


class TargetWatermarks:
    """High watermarks of one topic of the target, read with one client."""

    def __init__(self, bootstrap: str, topic: str):
        self.topic = topic
        self.consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"bench-watermarks-{uuid.uuid4().hex}", "enable.auto.commit": False}
        )
        self.partitions: list[int] = []

    def read(self) -> dict[int, int]:
        """Return {partition: high watermark}, empty until the topic has
        PARTITIONS partitions."""
        if len(self.partitions) < PARTITIONS:
            metadata = self.consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
            if metadata is None or metadata.error is not None:
                return {}
            self.partitions = sorted(metadata.partitions)
            if len(self.partitions) < PARTITIONS:
                return {}
        return {
            partition: self.consumer.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=5)[1]
            for partition in self.partitions
        }

    def close(self) -> None:
        self.consumer.close()


def replicate(ctx: Context, connector, source: SourceCluster, backlog: Backlog, timeout: float = 1800) -> dict:
    """Copy the backlog to a fresh target topic with a pull task; return
    Weir's timing, the nodes' CPU and the duplicates on the target."""
    server = ctx.weir
    target_topic = ctx.kafka.unique_topic("bench-replica")
    node_pids = server.connector_node_pids(connector)
    nodes_cpu = system.CpuMeter(node_pids).start()
    proxy_cpu = system.CpuMeter(source.proxy_pids()).start()
    source_cpu = system.CpuMeter([source.broker.process.pid]).start()
    target_cpu = system.CpuMeter([ctx.broker.process.pid]).start()
    body = replicator_body(backlog.topic, source.bootstrap, target_topic)
    task_id = server.api.create_task(connector.instance_id, body).json()["id"]
    created_at = time.monotonic()
    deadline = created_at + timeout
    while server.api.show_task(connector.instance_id, task_id).get("status") != "RUNNING":
        if time.monotonic() > deadline:
            raise AssertionError(f"replication task {task_id} not RUNNING after {timeout} s")
        time.sleep(0.05)
    running_at = time.monotonic()

    watermarks = TargetWatermarks(ctx.kafka.bootstrap, target_topic)
    marks: dict[int, int] = {}
    tick = running_at
    try:
        while True:
            try:
                marks = watermarks.read()
            except KafkaException as error:
                ctx.log(f"replication: reading the watermarks of {target_topic} failed, retrying: {error}")
            if marks and all(marks.get(partition, 0) >= end for partition, end in backlog.ends.items()):
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"task {task_id} copied {sum(marks.values())} of {backlog.records} records of {backlog.topic} "
                    f"to {target_topic} in {timeout} s"
                )
            # Poll on a fixed 100 ms grid, whatever a poll itself took.
            tick += WATERMARK_POLL_SECONDS
            time.sleep(max(0.0, tick - time.monotonic()))
    finally:
        watermarks.close()
    finished_at = time.monotonic()
    result = {
        "task_id": task_id,
        "target_topic": target_topic,
        "records": backlog.records,
        "bytes": backlog.bytes,
        "target_records": sum(marks.values()),
        "duplicates": sum(marks.values()) - backlog.records,
        "seconds": finished_at - running_at,
        "seconds_from_create": finished_at - created_at,
        "node_cpu_seconds": nodes_cpu.stop(),
        "proxy_cpu_seconds": proxy_cpu.stop() if source.proxied else None,
        "source_broker_cpu_seconds": source_cpu.stop(),
        "target_broker_cpu_seconds": target_cpu.stop(),
    }
    # NOTE: the target topics stay on the main broker, 2 GiB of tmpfs in a
    # full run. Deleting one of them with DeleteTopics made tansu 0.6.0
    # drop every topic of the broker, the dump backlogs included.
    server.api.delete_task(connector.instance_id, task_id)
    return result


def baseline_consume(ctx: Context, source: SourceCluster, backlog: Backlog) -> dict:
    proxy_cpu = system.CpuMeter(source.proxy_pids()).start()
    broker_cpu = system.CpuMeter([source.broker.process.pid]).start()
    run = rates(rdkafka_consume(ctx.tools, source.bootstrap, backlog, REPLICATOR_CONSUMER_SETTINGS))
    run["proxy_cpu_seconds"] = proxy_cpu.stop() if source.proxied else None
    run["source_broker_cpu_seconds"] = broker_cpu.stop()
    return run


def baseline_produce(ctx: Context, backlog: Backlog) -> dict:
    topic = ctx.kafka.create_topic(ctx.kafka.unique_topic("bench-replica-baseline"), PARTITIONS)
    broker_cpu = system.CpuMeter([ctx.broker.process.pid]).start()
    run = rates(
        rdkafka_produce(
            ctx.tools, ctx.kafka.bootstrap, topic, backlog.records, backlog.record_size, REPLICATOR_PRODUCER_SETTINGS
        )
    )
    run["target_broker_cpu_seconds"] = broker_cpu.stop()
    return run


def rtt_label(rtt_ms: float | None) -> str:
    return "direct" if rtt_ms is None else f"at {rtt_ms:g} ms RTT via proxy"


def run_replication(ctx: Context) -> dict:
    mib = ctx.replication_mib or (QUICK_MIB if ctx.quick else DEFAULT_MIB)
    rtts = ctx.replication_rtts or (QUICK_RTTS_MS if ctx.quick else FULL_RTTS_MS)
    connector = ctx.connector(2, UNCAPPED_SPECIFICATION, THROUGHPUT_PROFILE)
    source = SourceCluster(ctx)
    try:
        source.serve(None)
        ctx.log(f"replication: producing {mib} MiB of {RECORD_SIZE}-byte records to the source broker")
        backlog = produce_backlog(
            ctx.tools.rdkafka_performance,
            Kafka(source.bootstrap),
            ctx.work_dir / "producer-logs",
            "replication",
            RECORD_SIZE,
            PARTITIONS,
            mib * MiB,
            64 * 1024,
        )
        ctx.log(f"replication: backlog of {backlog.records} records in {backlog.produce_seconds:.1f} s")
        rows = []
        for rtt_ms in rtts:
            source.serve(rtt_ms)
            label = rtt_label(rtt_ms)
            # The target is local at every RTT, but -P runs in every row, so
            # that other work on the machine hits the baseline and Weir alike.
            ctx.log(f"replication {label}: rdkafka_performance -P to the target")
            produce = baseline_produce(ctx, backlog)
            ctx.log(f"replication {label}: -P {produce['mb_per_s']:.1f} MB/s; rdkafka_performance -C")
            consume = baseline_consume(ctx, source, backlog)
            ctx.log(f"replication {label}: -C {consume['mb_per_s']:.1f} MB/s; Weir")
            weir = rates(replicate(ctx, connector, source, backlog))
            baseline = min(consume, produce, key=lambda run: run["mb_per_s"])
            weir["ratio"] = weir["mb_per_s"] / baseline["mb_per_s"]
            ctx.log(f"replication {label}: Weir {weir['mb_per_s']:.1f} MB/s, {weir['ratio']:.0%} of the baseline")
            rows.append(
                {
                    "rtt_ms": rtt_ms,
                    "proxy": rtt_ms is not None,
                    "consume": consume,
                    "produce": produce,
                    "baseline": "consume" if baseline is consume else "produce",
                    "baseline_mb_per_s": baseline["mb_per_s"],
                    "weir": weir,
                }
            )
    finally:
        source.stop()
    return {
        "rows": rows,
        "backlog": backlog.as_dict(),
        "node_cnt": connector.node_cnt,
        "spec_code": THROUGHPUT_PROFILE,
        "task_num": TASK_NUM,
        "consumer_settings": REPLICATOR_CONSUMER_SETTINGS,
        "producer_settings": REPLICATOR_PRODUCER_SETTINGS,
        "targets": targets(rows),
    }


def targets(rows: list[dict]) -> list[dict]:
    result = [
        {
            "name": f"replication {rtt_label(row['rtt_ms'])} >= {REPLICATION_TARGET:.0%} of baseline",
            "value": f"{row['weir']['ratio']:.0%}",
            "met": row["weir"]["ratio"] >= REPLICATION_TARGET,
        }
        for row in rows
    ]
    # The largest round-trip time against 0 ms through the proxy, or against
    # the direct path when the run has no 0 ms row.
    proxied = [row for row in rows if row["proxy"]]
    references = [row for row in proxied if row["rtt_ms"] == 0] or [row for row in rows if not row["proxy"]]
    if proxied and references and max(row["rtt_ms"] for row in proxied) > 0:
        low = references[0]
        high = max(proxied, key=lambda row: row["rtt_ms"])
        kept = high["weir"]["mb_per_s"] / low["weir"]["mb_per_s"]
        baseline_kept = high["baseline_mb_per_s"] / low["baseline_mb_per_s"]
        result.append(
            {
                "name": f"replication at {high['rtt_ms']:g} ms RTT keeps >= {LATENCY_TARGET:.0%} of its rate "
                f"{rtt_label(low['rtt_ms'])}",
                "value": f"{kept:.0%} (baseline {baseline_kept:.0%})",
                "met": kept >= LATENCY_TARGET,
            }
        )
    return result
