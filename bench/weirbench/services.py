"""Processes of a benchmark run: the tansu broker, the S3 servers (s3s-fs
and moto), `weir server` with a benchmark configuration, and connectors on
its instances.

The process classes of tests/integration/harness are reused, so a benchmark
starts every component the way the integration tests do.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

from harness.kafka import Kafka, TansuBroker
from harness.procs import ManagedProcess, free_port, wait_until
from harness.s3 import ACCESS_KEY, SECRET_KEY, MotoServer, s3_client
from harness.weir import WeirServer, deep_merge, default_config, new_key

# Fetch settings of both the baseline consumer and the Weir nodes. With
# librdkafka's default fetch.wait.max.ms (500 ms) a consumer of tansu 0.6.0
# waits on every fetch. Larger fetches gain nothing from tansu's SQLite
# engine, which builds a response at about 20,000 records/s of 100 bytes.
# With fetch.max.bytes at 50 MB such a response took longer than a 10 s
# session timeout. The group's heartbeats got no response meanwhile, so the
# group rebalanced over and over.
FETCH_SETTINGS = {
    "fetch.wait.max.ms": "10",
    "fetch.max.bytes": "4194304",
    "max.partition.fetch.bytes": "524288",
}
# Session timeout of the benchmark nodes and the baseline consumer:
# librdkafka's default.
SESSION_TIMEOUT_MS = 45000

# Node profiles of the benchmark server, by spec_code.
PROFILES = {
    "bench.mem64": 64 * 1024 * 1024,
    "bench.mem128": 128 * 1024 * 1024,
    "bench.mem256": 256 * 1024 * 1024,
    # 1 GiB: librdkafka's prefetch queue then gets its default 64 MiB (1/16
    # of the budget), the same as the baseline consumer's.
    "bench.mem1g": 1024 * 1024 * 1024,
}

# The largest built-in specification (1200 MiB/s over all nodes).
UNCAPPED_SPECIFICATION = "1200MB"


class S3sServer:
    """`s3s-fs` serving a directory over the S3 protocol on loopback, with
    signature checks for the harness's dummy key."""

    name = "s3s-fs"

    def __init__(self, binary: Path, work_dir: Path):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.root = Path(work_dir) / "s3s-root"
        self.root.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(
            "s3s-fs",
            [
                binary,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--access-key",
                ACCESS_KEY,
                "--secret-key",
                SECRET_KEY,
                self.root,
            ],
            Path(work_dir) / "s3s-fs.log",
            env={**os.environ, "RUST_LOG": "warn"},
        )
        self.client = s3_client(self.endpoint)

    def start(self) -> "S3sServer":
        self.process.start()

        def ready() -> bool:
            if not self.process.alive():
                raise AssertionError(f"s3s-fs exited:\n{self.process.log_tail()}")
            try:
                requests.get(f"{self.endpoint}/", timeout=2)
                return True
            except requests.ConnectionError:
                return False

        wait_until(ready, timeout=30, message="s3s-fs to accept connections")
        return self

    def stop(self) -> None:
        self.process.stop()

    def create_bucket(self, name: str) -> str:
        self.client.create_bucket(Bucket=name)
        return name

    def delete_bucket_data(self, name: str) -> None:
        """Remove a bucket's objects from disk (the server keeps no other state)."""
        shutil.rmtree(self.root / name, ignore_errors=True)


class MotoBench(MotoServer):
    name = "moto"

    def delete_bucket_data(self, name: str) -> None:
        """Delete every object of a bucket, so that moto frees its memory."""
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=name):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=name, Delete={"Objects": keys})


@dataclass
class Tools:
    """Binaries a benchmark run uses."""

    weir: Path
    tansu: Path
    rdkafka_performance: Path
    s3s_fs: Path | None
    moto: Path
    wrk: Path | None


def bench_config(
    bootstrap: str, key, instances: int, specifications: dict[str, int], kafka_settings: dict[str, str]
) -> dict:
    """Return the integration tests' configuration with benchmark
    specifications, node profiles, `kafka_settings` for the node consumers
    and a 200 ms heartbeat. The short heartbeat makes RUNNING and the
    counters of /metrics show up within a fifth of a second."""
    config = default_config(bootstrap, key, instances)
    config["nodes"].pop("kafka", None)
    return deep_merge(
        config,
        {
            "specifications": [{"name": name, "bytes_per_second": rate} for name, rate in specifications.items()],
            "node_profiles": [
                {"spec_code": code, "memory_budget_bytes": budget} for code, budget in PROFILES.items()
            ],
            "nodes": {
                "heartbeat_interval_ms": 200,
                "dead_after_ms": 20000,
                "session_timeout_ms": SESSION_TIMEOUT_MS,
                "kafka": dict(kafka_settings),
            },
        },
    )


@dataclass
class Connector:
    instance_id: str
    connector_id: str
    node_cnt: int
    specification: str
    spec_code: str


@dataclass
class BenchServer:
    """A `weir server` with a pool of instances; each connector takes one."""

    server: WeirServer
    free_instances: list[str]
    connectors: list[Connector] = field(default_factory=list)

    @property
    def api(self):
        return self.server.api

    def enable(self, node_cnt: int, specification: str, spec_code: str, timeout: float = 120) -> Connector:
        """Create a connector on a free instance and wait until it is RUNNING."""
        if not self.free_instances:
            raise RuntimeError("no free instance left on the benchmark server; raise `instances`")
        instance_id = self.free_instances.pop(0)
        body = {"node_cnt": node_cnt, "specification": specification, "spec_code": spec_code}
        shown = self.api.enable_connector(instance_id, body, timeout=timeout)
        connector = Connector(instance_id, shown["connector_id"], node_cnt, specification, spec_code)
        self.connectors.append(connector)
        return connector

    def disable(self, connector: Connector, timeout: float = 120) -> None:
        """Delete the connector, wait until its nodes are gone and its
        instance is RUNNING again; the instance is not reused."""
        self.api.delete_connector(connector.instance_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.api.show_instance(connector.instance_id)
            if shown.get("status") == "RUNNING" and not shown.get("connector_enable"):
                break
            time.sleep(0.25)
        else:
            raise AssertionError(f"connector of instance {connector.instance_id} not deleted after {timeout} s")
        self.connectors.remove(connector)

    def connector_node_pids(self, connector: Connector) -> list[int]:
        """Return the pids of the live node processes of one connector."""
        return [pid for pid in self.server.node_pids() if connector.connector_id in _cmdline(pid)]

    def wait_connector_pids(self, connector: Connector, timeout: float = 60) -> list[int]:
        found = wait_until(
            lambda: (pids,) if len(pids := self.connector_node_pids(connector)) == connector.node_cnt else None,
            timeout=timeout,
            message=f"{connector.node_cnt} node processes of connector {connector.connector_id}",
        )
        return found[0]

    def bucket_root(self) -> Path:
        return self.server.data_dir / "buckets"


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            return file.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def start_broker(tools: Tools, broker_dir: Path) -> tuple[TansuBroker, Kafka]:
    """Start tansu with sqlite:// storage in broker_dir.

    Its memory:// engine returns the next batch for a fetch that starts
    inside a batch, so consumers that resume mid-batch lose records there.
    With the database on a disk, tansu 0.6.0 spends most of a produce
    waiting for fsync (2,800 records/s of 100 bytes on this machine's
    disk, 33,000 records/s on tmpfs), so run.py puts it on tmpfs.
    """
    broker_dir = Path(broker_dir)
    broker_dir.mkdir(parents=True, exist_ok=True)
    broker = TansuBroker(tools.tansu, broker_dir, storage=broker_dir / "tansu.db").start()
    return broker, Kafka(broker.bootstrap)


def start_weir(
    tools: Tools,
    work_dir: Path,
    bootstrap: str,
    instances: int,
    specifications: dict[str, int],
    kafka_settings: dict[str, str],
) -> BenchServer:
    """Start a benchmark server; kafka_settings go to every node consumer."""
    key = new_key()
    config = bench_config(bootstrap, key, instances, specifications, kafka_settings)
    server = WeirServer(tools.weir, Path(work_dir) / f"weir-{uuid.uuid4().hex[:6]}", config, key, name="weir-bench")
    server.start()
    return BenchServer(server, list(server.instance_ids))
