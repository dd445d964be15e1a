"""Sections "caps" (read rate against the connector's specification) and
"memory" (peak RSS of the nodes against partition count and backlog size)."""

from __future__ import annotations

import time

from harness.tasks import obs_task, sink_config

from . import system
from .context import GiB, MiB, Context, metric
from .dump import PARTITIONS, dump_backlog
from .services import PROFILES

# Specifications of the cap runs, in bytes per second over all nodes.
# The largest stays well below the 15 to 19 MB/s that tansu served uncapped.
CAPS_FULL = {"bench-cap-1MiB": 1 * MiB, "bench-cap-4MiB": 4 * MiB, "bench-cap-8MiB": 8 * MiB}
CAPS_QUICK = {"bench-cap-256KiB": 256 * 1024, "bench-cap-512KiB": 512 * 1024, "bench-cap-1MiB": 1 * MiB}
CAP_TOLERANCE = 0.05

# The memory runs use the default profile of a connector without spec_code.
MEMORY_PROFILE = "bench.mem256"
# Allowed excess of peak RSS over the budget: the process itself, code and
# allocator slack that no budget share covers.
MEMORY_SLACK = 64 * MiB
# The task fields' defaults: 1,000,000 records or 5 MiB per object.
MEMORY_SINK = {"flush_size": 1_000_000, "obs_part_size": 5 * MiB, "deliver_time_interval": 30}


def cap_specifications(quick: bool) -> dict[str, int]:
    return CAPS_QUICK if quick else CAPS_FULL


def run_caps(ctx: Context) -> dict:
    # The warm-up outlasts the first rebalance: when the second node joins,
    # the partitions it takes over went unread for up to 22 s in the runs
    # here, and the window measures the cap, not that gap.
    warmup, window = (2.0, 4.0) if ctx.quick else (30.0, 60.0)
    caps = cap_specifications(ctx.quick)
    # Each run reads from `earliest` in a group of its own, so the backlog
    # must outlast the fastest run's warm-up and window.
    needed = int(max(caps.values()) * (warmup + window) * 1.2)
    backlog = dump_backlog(ctx, 1024)
    if backlog.bytes < needed:
        backlog = ctx.backlog("caps", 1024, PARTITIONS, needed, object_bytes=4 * MiB, exact=False)
    rows = []
    targets = []
    for name, rate in caps.items():
        connector = ctx.connector(2, name, "bench.mem256")
        bucket, endpoint, _, _ = ctx.destination("local")
        sink = sink_config(bucket, "bench", endpoint, flush_size=backlog.flush_size, deliver_time_interval=30)
        created = ctx.weir.api.create_task(connector.instance_id, obs_task(backlog.topic, sink)).json()
        task_id = created["id"]
        ctx.weir.api.wait_task_status(connector.instance_id, task_id, "RUNNING")
        ctx.log(f"caps: {name} ({rate} B/s), {window:.0f} s window after {warmup:.0f} s")
        time.sleep(warmup)
        samples = []
        end = time.monotonic() + window
        while True:
            read = metric(ctx.weir.server.metrics(), "weir_task_read_bytes_total", task_id)
            samples.append((time.monotonic(), read))
            if samples[-1][0] >= end:
                break
            time.sleep(min(1.0, max(0.05, end - time.monotonic())))
        (t0, b0), (t1, b1) = samples[0], samples[-1]
        measured = (b1 - b0) / (t1 - t0)
        error = measured / rate - 1
        rows.append(
            {
                "specification": name,
                "bytes_per_second": rate,
                "window_seconds": t1 - t0,
                "measured_bytes_per_second": measured,
                "error": error,
                "samples": len(samples),
            }
        )
        targets.append(
            {
                "name": f"cap {name} read within {CAP_TOLERANCE:.0%}",
                "value": f"{error:+.1%}",
                "met": abs(error) <= CAP_TOLERANCE,
            }
        )
        ctx.log(f"caps: {name}: measured {measured:.0f} B/s ({error:+.1%})")
        ctx.weir.api.delete_task(connector.instance_id, task_id)
        ctx.drop_destination("local", bucket, None)
        ctx.drop_connector(connector)
    return {"rows": rows, "targets": targets, "warmup_seconds": warmup}


def memory_runs(ctx: Context) -> list[tuple[str, int, int]]:
    """(series, partitions, backlog bytes) of the memory runs."""
    if ctx.quick:
        by_partitions = [("partitions", count, 2 * MiB) for count in (10, 100, 1000)]
        by_backlog = [("backlog", PARTITIONS, size) for size in (1 * MiB, 0)]
    else:
        by_partitions = [("partitions", count, 512 * MiB) for count in (10, 100, 1000)]
        by_backlog = [("backlog", PARTITIONS, size) for size in (64 * MiB, 256 * MiB, 0)]
    # Size 0 stands for the 1 KiB backlog of the dump section.
    return by_partitions + by_backlog


def run_memory(ctx: Context) -> dict:
    budget = PROFILES[MEMORY_PROFILE]
    rows = []
    targets = []
    for series, partitions, total in memory_runs(ctx):
        if total == 0:
            backlog = dump_backlog(ctx, 1024)
        else:
            name = f"mem-{partitions}p-{total // MiB}m"
            backlog = ctx.backlog(name, 1024, partitions, total, object_bytes=4 * MiB, exact=False)
        # A fresh connector per run, so that each node's VmHWM covers this run only.
        connector = ctx.connector(2, "1200MB", MEMORY_PROFILE, server=ctx.defaults_server())
        ctx.log(f"memory: {partitions} partitions, {backlog.bytes / MiB:.0f} MiB backlog")
        run = ctx.run_task(connector, backlog, "local", server=ctx.defaults_server(), done="read", sink_fields=MEMORY_SINK)
        pids = ctx.defaults_server().connector_node_pids(connector)
        peaks = [sample.peak_rss_bytes for pid in pids if (sample := system.sample_process(pid)) is not None]
        peak = max(peaks + [run["node_peak_rss_bytes"]])
        row = {
            "series": series,
            "partitions": partitions,
            "backlog_bytes": backlog.bytes,
            "budget_bytes": budget,
            "peak_rss_bytes": peak,
            "peak_rss_per_node_bytes": peaks,
            "seconds": run["seconds"],
        }
        rows.append(row)
        targets.append(
            {
                "name": f"peak RSS with {partitions} partitions, {backlog.bytes / MiB:.0f} MiB backlog <= budget + {MEMORY_SLACK // MiB} MiB",
                "value": f"{peak / MiB:.0f} MiB of {(budget + MEMORY_SLACK) / MiB:.0f} MiB",
                "met": peak <= budget + MEMORY_SLACK,
            }
        )
        ctx.log(f"memory: peak RSS {peak / MiB:.0f} MiB (budget {budget / MiB:.0f} MiB)")
        ctx.drop_connector(connector, server=ctx.defaults_server())
    return {"rows": rows, "targets": targets, "spec_code": MEMORY_PROFILE, "slack_bytes": MEMORY_SLACK}
