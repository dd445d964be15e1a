"""State shared by the sections of one benchmark run: options, tools,
running services, backlogs, and helpers to run an OBS_SINK task to the end.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from harness.kafka import Kafka, TansuBroker
from harness.tasks import obs_task, sink_config

from . import system
from .backlog import Backlog, produce_backlog
from .services import (
    BenchServer,
    Connector,
    MotoBench,
    S3sServer,
    Tools,
    start_weir,
)
from .watch import ObjectWatcher, local_watcher, s3_watcher

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass
class Context:
    quick: bool
    tools: Tools
    work_dir: Path
    broker: TansuBroker
    kafka: Kafka
    s3: S3sServer | MotoBench
    weir: BenchServer
    specifications: dict[str, int]
    record_sizes: tuple[int, ...]
    # Backlog of the dump topic of each record size in MiB, where it is not
    # the mode's default.
    dump_mib: dict[int, int]
    # Backlog of the replication section in MiB, and its round-trip times in
    # ms (None for the direct path), where they are not the mode's default.
    replication_mib: int | None = None
    replication_rtts: tuple[float | None, ...] | None = None
    backlogs: dict[str, Backlog] = field(default_factory=dict)
    moto: MotoBench | None = None
    servers: list[BenchServer] = field(default_factory=list)
    _defaults_server: BenchServer | None = None
    _connectors: dict[tuple, Connector] = field(default_factory=dict)

    def log(self, message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    # ---- data ---------------------------------------------------------------

    def backlog(
        self, name: str, record_size: int, partitions: int, total_bytes: int, object_bytes: int, exact: bool = True
    ) -> Backlog:
        """Return the named backlog, producing it on first use."""
        if name not in self.backlogs:
            self.log(f"producing backlog {name}: {total_bytes / MiB:.0f} MiB of {record_size}-byte records, {partitions} partitions")
            backlog = produce_backlog(
                self.tools.rdkafka_performance,
                self.kafka,
                self.work_dir / "producer-logs",
                name,
                record_size,
                partitions,
                total_bytes,
                object_bytes,
                exact=exact,
            )
            self.log(f"backlog {name}: {backlog.records} records in {backlog.produce_seconds:.1f} s")
            self.backlogs[name] = backlog
        return self.backlogs[name]

    # ---- connectors ---------------------------------------------------------

    def connector(self, node_cnt: int, specification: str, spec_code: str, server: BenchServer | None = None) -> Connector:
        """Return a RUNNING connector with these settings, enabling one on first use."""
        server = server or self.weir
        key = (id(server), node_cnt, specification, spec_code)
        if key not in self._connectors:
            self.log(f"enabling a connector: {node_cnt} nodes, specification {specification}, spec_code {spec_code}")
            self._connectors[key] = server.enable(node_cnt, specification, spec_code)
            server.wait_connector_pids(self._connectors[key])
        return self._connectors[key]

    def drop_connector(self, connector: Connector, server: BenchServer | None = None) -> None:
        server = server or self.weir
        for key, value in list(self._connectors.items()):
            if value is connector:
                del self._connectors[key]
        server.disable(connector)

    # ---- one task from start to the last object -----------------------------

    def destination(self, backend: str) -> tuple[str, str | None, ObjectWatcher, object]:
        """Create a fresh bucket; return (bucket, endpoint or None, watcher, server)."""
        bucket = f"bench-{uuid.uuid4().hex[:10]}"
        if backend == "local":
            return bucket, None, local_watcher(self.weir.bucket_root() / bucket), None
        server = self.moto_server() if backend == "moto" else self.s3
        server.create_bucket(bucket)
        return bucket, server.endpoint, s3_watcher(server.client, bucket), server

    def defaults_server(self) -> BenchServer:
        """Return a second server, started on first use, whose nodes keep
        Weir's own fetch settings (sized from the memory budget)."""
        if self._defaults_server is None:
            self._defaults_server = self.start_server(instances=12, kafka_settings={})
        return self._defaults_server

    def start_server(self, instances: int, kafka_settings: dict[str, str]) -> BenchServer:
        server = start_weir(
            self.tools, self.work_dir, self.kafka.bootstrap, instances, self.specifications, kafka_settings
        )
        self.servers.append(server)
        return server

    def moto_server(self) -> MotoBench:
        if self.moto is None:
            self.moto = MotoBench(self.tools.moto, self.work_dir / "moto")
            self.moto.start()
        return self.moto

    def drop_destination(self, backend: str, bucket: str, server) -> None:
        if backend == "local":
            shutil.rmtree(self.weir.bucket_root() / bucket, ignore_errors=True)
        else:
            server.delete_bucket_data(bucket)

    def run_task(
        self,
        connector: Connector,
        backlog: Backlog,
        backend: str,
        sink_fields: dict | None = None,
        timeout: float = 1800,
        server: BenchServer | None = None,
        done: str = "objects",
    ) -> dict:
        """Create an OBS_SINK task on `backlog.topic` from `earliest` and wait
        for its last object (done="objects") or for its last record read
        (done="read"); return timings, CPU and peak RSS of the nodes.

        Times are from time.monotonic(): `seconds` runs from the first
        ShowConnectorTask that returned RUNNING to the poll that found the
        last object, `seconds_from_create` from the CreateConnectorTask
        response.
        """
        server = server or self.weir
        bucket, endpoint, watcher, s3_server = self.destination(backend)
        fields = {"flush_size": backlog.flush_size, "deliver_time_interval": 300}
        fields.update(sink_fields or {})
        sink = sink_config(bucket, "bench", endpoint, **fields)
        node_pids = server.connector_node_pids(connector)
        nodes_cpu = system.CpuMeter(node_pids).start()
        broker_cpu = system.CpuMeter([self.broker.process.pid]).start()
        s3_cpu = system.CpuMeter([s3_server.process.pid] if s3_server else []).start()
        created = server.api.create_task(connector.instance_id, obs_task(backlog.topic, sink)).json()
        task_id = created["id"]
        created_at = time.monotonic()
        running_at = None
        deadline = created_at + timeout
        while running_at is None:
            if server.api.show_task(connector.instance_id, task_id).get("status") == "RUNNING":
                running_at = time.monotonic()
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"task {task_id} not RUNNING after {timeout} s")
            time.sleep(0.05)
        peak_rss = 0
        while True:
            if done == "objects":
                watcher.poll()
                finished = watcher.complete(backlog.ends)
            else:
                finished = self.read_records(server, task_id) >= backlog.records
            for pid in node_pids:
                sample = system.sample_process(pid)
                if sample is not None:
                    peak_rss = max(peak_rss, sample.peak_rss_bytes)
            if finished:
                break
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"task {task_id} on {backlog.topic} did not finish within {timeout} s; "
                    f"{len(watcher.chunks)} objects seen"
                )
            time.sleep(0.1)
        finished_at = time.monotonic()
        node_cpu_seconds = nodes_cpu.stop()
        result = {
            "task_id": task_id,
            "backend": backend,
            "node_cnt": connector.node_cnt,
            "spec_code": connector.spec_code,
            "specification": connector.specification,
            "records": backlog.records,
            "bytes": backlog.bytes,
            "seconds": finished_at - running_at,
            "seconds_from_create": finished_at - created_at,
            "node_cpu_seconds": node_cpu_seconds,
            "broker_cpu_seconds": broker_cpu.stop(),
            "s3_server_cpu_seconds": s3_cpu.stop() if s3_server else None,
            "node_peak_rss_bytes": peak_rss,
            "objects": len(watcher.chunks),
            "object_bytes": watcher.total_bytes(),
        }
        server.api.delete_task(connector.instance_id, task_id)
        self.drop_destination(backend, bucket, s3_server)
        return result

    @staticmethod
    def read_records(server: BenchServer, task_id: str) -> int:
        return int(metric(server.server.metrics(), "weir_task_read_records_total", task_id))


def metric(text: str, name: str, task_id: str) -> float:
    """Return the value of one per-task metric in Prometheus text, 0 when absent."""
    needle = f'task_id="{task_id}"'
    for line in text.splitlines():
        if line.startswith(name + "{") and needle in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def rdkafka_consume(tools: Tools, bootstrap: str, backlog: Backlog, settings: dict, timeout: float = 1800) -> dict:
    """Read the whole backlog with `rdkafka_performance -C` in a fresh group
    from `earliest`; return its own timing (first to last record) and CPU."""
    group = f"bench-baseline-{uuid.uuid4().hex[:8]}"
    argv = [
        str(tools.rdkafka_performance),
        "-C",
        "-G",
        group,
        "-t",
        backlog.topic,
        "-b",
        bootstrap,
        "-c",
        str(backlog.records),
        "-X",
        "auto.offset.reset=earliest",
    ]
    for key, value in settings.items():
        argv += ["-X", f"{key}={value}"]

    text, wall, usage = run_rdkafka_performance(argv, f"rdkafka_performance -C on {backlog.topic}", timeout)
    matches = re.findall(r"% (\d+) messages \((\d+) bytes\) consumed in (\d+)ms", text)
    if not matches:
        raise AssertionError(f"no summary line in rdkafka_performance output:\n{text[-2000:]}")
    messages, size, millis = (int(value) for value in matches[-1])
    return performance_result(messages, size, millis, wall, usage, argv)


def rdkafka_produce(
    tools: Tools, bootstrap: str, topic: str, records: int, record_size: int, settings: dict, timeout: float = 1800
) -> dict:
    """Write `records` records of `record_size` bytes (no key) to an existing
    topic with `rdkafka_performance -P` and the random partitioner; return
    its own timing (first produce call to last delivery report) and CPU."""
    argv = [
        str(tools.rdkafka_performance),
        "-P",
        "-t",
        topic,
        "-b",
        bootstrap,
        "-s",
        str(record_size),
        "-c",
        str(records),
    ]
    for key, value in settings.items():
        argv += ["-X", f"{key}={value}"]
    text, wall, usage = run_rdkafka_performance(argv, f"rdkafka_performance -P to {topic}", timeout)
    pattern = r"% (\d+) messages produced \((\d+) bytes\), (\d+) delivered \(offset -?\d+, (\d+) failed\) in (\d+)ms"
    matches = re.findall(pattern, text)
    if not matches:
        raise AssertionError(f"no summary line in rdkafka_performance output:\n{text[-2000:]}")
    produced, size, delivered, failed, millis = (int(value) for value in matches[-1])
    if delivered != records or failed:
        raise AssertionError(
            f"rdkafka_performance -P delivered {delivered} of {records} records to {topic}, {failed} failed:\n"
            f"{text[-2000:]}"
        )
    return performance_result(delivered, size, millis, wall, usage, argv)


def performance_result(
    records: int, size: int, millis: int, wall: float, usage: os.struct_rusage, argv: list[str]
) -> dict:
    """Build the result of one rdkafka_performance run: its own timing
    (`millis`), the wall clock and the CPU and peak RSS of the process."""
    return {
        "records": records,
        "bytes": size,
        "seconds": millis / 1000,
        "seconds_wall": wall,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_bytes": usage.ru_maxrss * 1024,
        "argv": argv,
    }


def run_rdkafka_performance(argv: list[str], what: str, timeout: float) -> tuple[str, float, os.struct_rusage]:
    """Run rdkafka_performance to its end; return its output, wall-clock
    seconds and resource usage. Raises when it exits non-zero or times out."""
    log_path = Path(tempfile.mkstemp(prefix="rdkafka-performance-", suffix=".log")[1])
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    # os.wait4 reaps the child and returns its own resource usage.
    try:
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid == process.pid:
                break
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{what} timed out after {timeout} s; see {log_path}")
            time.sleep(0.02)
    except BaseException:
        # A time-out or a stop of the run: the child must not outlive it.
        process.kill()
        os.wait4(process.pid, 0)
        raise
    wall = time.monotonic() - started

    text = log_path.read_text(errors="replace")
    log_path.unlink()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise AssertionError(f"{what} exited with {code}:\n{text[-2000:]}")
    return text, wall, usage
