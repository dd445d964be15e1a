"""Sections "dump" (Weir against rdkafka_performance -C per record size)
and "scaling" (the same dump with 2, 3 and 4 nodes)."""

from __future__ import annotations

from .context import GiB, MiB, Context, rdkafka_consume
from .services import FETCH_SETTINGS, SESSION_TIMEOUT_MS, UNCAPPED_SPECIFICATION

PARTITIONS = 12
# Node profile of the throughput runs: its 1 GiB budget gives librdkafka's
# prefetch queue 64 MiB, the baseline consumer's default.
THROUGHPUT_PROFILE = "bench.mem1g"
SCALING_NODE_COUNTS = (2, 3, 4)
# rdkafka_performance sets session.timeout.ms=6000 itself; -X overrides it
# with the nodes' session timeout.
BASELINE_SETTINGS = {**FETCH_SETTINGS, "session.timeout.ms": str(SESSION_TIMEOUT_MS)}
# Fraction of the baseline read rate that Weir must reach.
DUMP_TARGET = 0.9


def size_label(size: int) -> str:
    if size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} B"


RECORD_SIZES = (100, 1024, 10240)


def dump_backlog(ctx: Context, size: int):
    if size in ctx.dump_mib:
        total = ctx.dump_mib[size] * MiB
    else:
        total = 4 * MiB if ctx.quick else GiB
    object_bytes = 64 * 1024 if ctx.quick else 4 * MiB
    return ctx.backlog(f"dump-{size}", size, PARTITIONS, total, object_bytes)


def rates(run: dict) -> dict:
    """Add MB/s (10^6 bytes), records/s and CPU seconds per GiB to a run."""
    seconds = max(run["seconds"], 1e-9)
    run["mb_per_s"] = run["bytes"] / seconds / 1e6
    run["records_per_s"] = run["records"] / seconds
    cpu = run.get("node_cpu_seconds", run.get("cpu_seconds"))
    if cpu is not None:
        run["cpu_seconds_per_gib"] = cpu / (run["bytes"] / GiB)
    return run


def run_dump(ctx: Context) -> dict:
    connector = ctx.connector(2, UNCAPPED_SPECIFICATION, THROUGHPUT_PROFILE)
    s3_name = ctx.s3.name
    rows = []
    targets = []
    for size in ctx.record_sizes:
        backlog = dump_backlog(ctx, size)
        ctx.log(f"dump {size_label(size)}: rdkafka_performance -C")
        first = rates(rdkafka_consume(ctx.tools, ctx.kafka.bootstrap, backlog, BASELINE_SETTINGS))
        ctx.log(f"dump {size_label(size)}: baseline {first['mb_per_s']:.1f} MB/s; Weir to the local backend")
        local = rates(ctx.run_task(connector, backlog, "local"))
        ctx.log(f"dump {size_label(size)}: local {local['mb_per_s']:.1f} MB/s; Weir to {s3_name}")
        s3 = rates(ctx.run_task(connector, backlog, "s3"))
        ctx.log(f"dump {size_label(size)}: {s3_name} {s3['mb_per_s']:.1f} MB/s")
        row = {"record_size": size, "backlog": backlog.as_dict(), "local": local, "s3": s3, "s3_server": s3_name}
        # moto once, at 1 KiB, to show how much a slow S3 server costs.
        if size == 1024:
            ctx.log("dump 1 KiB: Weir to moto")
            row["moto"] = rates(ctx.run_task(connector, backlog, "moto"))
        # Under other load, single runs of the baseline varied by up to 1.7
        # times, so it reads once more at the end and the faster of its two
        # runs is the baseline, which keeps Weir's ratio conservative.
        last = rates(rdkafka_consume(ctx.tools, ctx.kafka.bootstrap, backlog, BASELINE_SETTINGS))
        ctx.log(f"dump {size_label(size)}: baseline again {last['mb_per_s']:.1f} MB/s")
        row["baseline_runs"] = [first, last]
        baseline = row["baseline"] = max(first, last, key=lambda run: run["mb_per_s"])
        rows.append(row)
        for backend in ("local", "s3"):
            ratio = row[backend]["mb_per_s"] / baseline["mb_per_s"]
            row[backend]["ratio"] = ratio
            name = "local file system" if backend == "local" else s3_name
            targets.append(
                {
                    "name": f"dump {size_label(size)} to {name} >= {DUMP_TARGET:.0%} of rdkafka_performance",
                    "value": f"{ratio:.0%}",
                    "met": ratio >= DUMP_TARGET,
                }
            )
        if "moto" in row:
            row["moto"]["ratio"] = row["moto"]["mb_per_s"] / baseline["mb_per_s"]
    return {"rows": rows, "targets": targets, "node_cnt": connector.node_cnt, "spec_code": THROUGHPUT_PROFILE}


def run_scaling(ctx: Context) -> dict:
    backlog = dump_backlog(ctx, 1024)
    rows = []
    for node_cnt in SCALING_NODE_COUNTS:
        connector = ctx.connector(node_cnt, UNCAPPED_SPECIFICATION, THROUGHPUT_PROFILE)
        ctx.log(f"scaling: {node_cnt} nodes")
        run = rates(ctx.run_task(connector, backlog, "local"))
        run["broker_cpu_seconds_per_gib"] = run["broker_cpu_seconds"] / (run["bytes"] / GiB)
        rows.append(run)
        ctx.log(f"scaling: {node_cnt} nodes: {run['mb_per_s']:.1f} MB/s, {run['cpu_seconds_per_gib']:.1f} CPU s/GiB")
        if node_cnt != 2:
            ctx.drop_connector(connector)
    return {"rows": rows, "backlog": backlog.as_dict(), "targets": []}
