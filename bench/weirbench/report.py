"""Rendering of a run's results as Markdown, and where the files go.

A full run writes bench/results/DATE-COMMIT.json and replaces the part of
BENCHMARKS.md between the two marker lines. A quick run writes under
bench/results/quick/ and leaves BENCHMARKS.md alone. With --out, both files
go to that directory (results.json and BENCHMARKS.md).
"""

from __future__ import annotations

import json
from pathlib import Path

BEGIN = "<!-- bench-results:begin (written by scripts/bench.sh) -->"
END = "<!-- bench-results:end -->"
MiB = 1024 * 1024
GiB = 1024 * MiB


def load_text(load: list[float] | None) -> str:
    if not load:
        return "n/a"
    return " / ".join(f"{value:.2f}" for value in load)


def size_text(size: int) -> str:
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"


def bytes_text(count: float) -> str:
    if count >= GiB:
        return f"{count / GiB:.2f} GiB"
    if count >= MiB:
        return f"{count / MiB:.1f} MiB"
    return f"{count / 1024:.0f} KiB"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def section_head(title: str, section: dict) -> list[str]:
    lines = [f"### {title}", ""]
    lines.append(
        f"Load average (1/5/15 min) {load_text(section.get('load_before'))} at the start, "
        f"{load_text(section.get('load_after'))} at the end; {section.get('seconds', 0):.0f} s."
    )
    lines.append("")
    if "error" in section:
        lines += [f"**Section failed:** `{section['error']}`", ""]
    return lines


def rate_cell(run: dict | None) -> str:
    if not run:
        return "n/a"
    return f"{run['mb_per_s']:.1f} MB/s, {run['records_per_s'] / 1000:.0f}k rec/s"


def render_dump(section: dict) -> list[str]:
    lines = section_head("1. Dump throughput", section)
    rows = section.get("rows", [])
    if not rows:
        return lines
    s3_name = rows[0]["s3_server"]
    lines.append(
        f"Fresh consumer group at `earliest`, {section['node_cnt']} nodes, node profile `{section['spec_code']}`, "
        "specification 1200MB. The baseline is `rdkafka_performance -C` (its own timing, first to last record), "
        "the faster of a run before and a run after Weir's (both are in the JSON). "
        "Weir's time runs from the first ShowConnectorTask that returned RUNNING to the poll (every 100 ms) that "
        "found the last object. MB = 10^6 bytes of record values; CPU is user + system seconds of all node "
        "processes (of rdkafka_performance for the baseline) per GiB read."
    )
    lines.append("")

    body = []
    for row in rows:
        backlog = row["backlog"]
        body.append(
            [
                size_text(row["record_size"]),
                f"{bytes_text(backlog['bytes'])}, {backlog['records']:,} rec",
                rate_cell(row["baseline"]),
                rate_cell(row["local"]),
                f"{row['local']['ratio']:.0%}",
                rate_cell(row["s3"]),
                f"{row['s3']['ratio']:.0%}",
                f"{row['baseline']['cpu_seconds_per_gib']:.1f} / {row['local']['cpu_seconds_per_gib']:.1f} / "
                f"{row['s3']['cpu_seconds_per_gib']:.1f}",
            ]
        )
    lines += table(
        [
            "record",
            "backlog",
            "rdkafka_performance",
            "Weir, local files",
            "local / baseline",
            f"Weir, S3 ({s3_name})",
            "S3 / baseline",
            "CPU s/GiB base / local / S3",
        ],
        body,
    )
    lines.append("")

    for row in rows:
        if "moto" in row:
            moto = row["moto"]
            lines.append(
                f"Weir to moto (Python S3 server) at {size_text(row['record_size'])}: {rate_cell(moto)}, "
                f"{moto['ratio']:.0%} of the baseline; moto used {moto['s3_server_cpu_seconds']:.0f} CPU s against "
                f"{row['s3']['s3_server_cpu_seconds']:.0f} CPU s of {s3_name} for the same backlog."
            )
            lines.append("")
    return lines


def render_replication(section: dict) -> list[str]:
    lines = section_head("2. Replication throughput", section)
    rows = section.get("rows", [])
    if not rows:
        return lines
    lines += [replication_method(section), ""]
    lines += table(REPLICATION_HEADER, [replication_row(row) for row in rows])
    lines.append("")
    return lines


def replication_method(section: dict) -> str:
    backlog = section["backlog"]
    consumer = section["consumer_settings"]
    return (
        f"A `pull` task (`task_num` {section['task_num']}, `consumer_strategy` earliest) on {section['node_cnt']} "
        f"nodes, node profile `{section['spec_code']}`, copies {bytes_text(backlog['bytes'])} "
        f"({backlog['records']:,} records of {size_text(backlog['record_size'])}, {backlog['partitions']} partitions) "
        "from a second tansu broker to a fresh topic on the main one. Weir's time runs from the first "
        "ShowConnectorTask that returned RUNNING to the poll (every 100 ms) at which every target partition's high "
        "watermark reached the source's; the seconds from the CreateConnectorTask response are in brackets. "
        "The baseline is the slower of `rdkafka_performance -C` on the source "
        "(through the same proxy) and `-P` of as many records to a fresh topic on the target, each by its own "
        "timing and run just before Weir's. "
        f"Consumer settings of both: `fetch.max.bytes={consumer['fetch.max.bytes']}`, "
        f"`max.partition.fetch.bytes={consumer['max.partition.fetch.bytes']}`, "
        f"`fetch.wait.max.ms={consumer['fetch.wait.max.ms']}`, "
        f"`queued.max.messages.kbytes={consumer['queued.max.messages.kbytes']}`. "
        "The delay proxy (`bench/weirbench/delay_proxy.py`) delays each direction by half the RTT. "
        "CPU is user + system seconds per GiB of record values."
    )


def replication_row(row: dict) -> list[str]:
    weir = row["weir"]
    proxy_cpu = weir.get("proxy_cpu_seconds")
    return [
        "direct" if row["rtt_ms"] is None else f"{row['rtt_ms']:g} ms",
        rate_cell(row["consume"]),
        rate_cell(row["produce"]),
        f"-{'C' if row['baseline'] == 'consume' else 'P'}, {row['baseline_mb_per_s']:.1f} MB/s",
        rate_cell(weir),
        f"{weir['ratio']:.0%}",
        f"{weir['seconds']:.1f} ({weir['seconds_from_create']:.1f})",
        f"{weir['cpu_seconds_per_gib']:.1f}",
        f"{row['consume']['cpu_seconds_per_gib']:.1f}",
        machine_cores(weir),
        f"{weir['duplicates']:,}",
        "n/a" if proxy_cpu is None else f"{proxy_cpu:.1f}",
    ]


def machine_cores(run: dict) -> str:
    """Return the CPU cores used during a replication run by the nodes and both brokers, with their sum."""
    if "source_broker_cpu_seconds" not in run:
        return "n/a"
    parts = [run["node_cpu_seconds"], run["source_broker_cpu_seconds"], run["target_broker_cpu_seconds"]]
    wall = max(run["seconds_from_create"], 1e-9)
    cores = [value / wall for value in parts]
    return " + ".join(f"{value:.2f}" for value in cores) + f" = {sum(cores):.2f}"


REPLICATION_HEADER = [
    "RTT",
    "rdkafka_performance -C",
    "rdkafka_performance -P",
    "baseline",
    "Weir",
    "Weir / baseline",
    "Weir s (from create)",
    "node CPU s/GiB",
    "-C CPU s/GiB",
    "cores used by nodes + source + target tansu (Weir run)",
    "duplicates",
    "proxy CPU s (Weir run)",
]


def render_scaling(section: dict) -> list[str]:
    lines = section_head("3. Scaling", section)
    rows = section.get("rows", [])
    if not rows:
        return lines
    backlog = section["backlog"]
    lines.append(
        f"The 1 KiB dump ({bytes_text(backlog['bytes'])}) to the local backend with 2, 3 and 4 nodes on the "
        "same two cores. More nodes cannot add cores here, so CPU seconds per GiB show the cost of each added node."
    )
    lines.append("")
    body = [
        [
            str(run["node_cnt"]),
            rate_cell(run),
            f"{run['seconds']:.1f}",
            f"{run['cpu_seconds_per_gib']:.1f}",
            f"{run['broker_cpu_seconds_per_gib']:.1f}",
            bytes_text(run["node_peak_rss_bytes"]),
        ]
        for run in rows
    ]
    lines += table(["nodes", "throughput", "seconds", "node CPU s/GiB", "broker CPU s/GiB", "max node peak RSS"], body)
    lines.append("")
    return lines


def render_caps(section: dict) -> list[str]:
    lines = section_head("4. Bandwidth cap accuracy", section)
    rows = section.get("rows", [])
    if not rows:
        return lines
    lines.append(
        f"Read rate from `weir_task_read_bytes_total` on /metrics (keys plus values, summed over 2 nodes), over the "
        f"window after {section['warmup_seconds']:.0f} s of warm-up; 1 KiB records."
    )
    lines.append("")
    body = [
        [
            f"`{row['specification']}`",
            f"{row['bytes_per_second']:,}",
            f"{row['window_seconds']:.0f} s",
            f"{row['measured_bytes_per_second']:,.0f}",
            f"{row['error']:+.2%}",
        ]
        for row in rows
    ]
    lines += table(["specification", "cap B/s", "window", "measured B/s", "error"], body)
    lines.append("")
    return lines


def render_memory(section: dict) -> list[str]:
    lines = section_head("5. Memory", section)
    rows = section.get("rows", [])
    if not rows:
        return lines
    lines.append(
        f"Peak RSS (VmHWM) of each node of a fresh 2-node connector with spec_code `{section['spec_code']}`, read "
        "when the task has read its whole backlog of 1 KiB records. The nodes keep Weir's own fetch settings "
        "(sized from the budget), and the task keeps the default object bounds (5 MiB)."
    )
    lines.append("")
    body = [
        [
            row["series"],
            str(row["partitions"]),
            bytes_text(row["backlog_bytes"]),
            bytes_text(row["budget_bytes"]),
            " / ".join(bytes_text(value) for value in row["peak_rss_per_node_bytes"]),
        ]
        for row in rows
    ]
    lines += table(["series", "partitions", "backlog", "memory budget", "peak RSS per node"], body)
    lines.append("")
    return lines


def render_latency(section: dict) -> list[str]:
    lines = section_head("6. Latency", section)
    rows = section.get("rows", [])
    if not rows:
        return lines
    lines.append(
        f"Produce time (wall clock before `produce()`) to the first listing (every {section['poll_seconds']} s) "
        "that shows the record's object, local backend, deliver_time_interval 30 s."
    )
    lines.append("")
    body = [
        [
            row["name"],
            f"{row['rate']}",
            f"{row['records']:,}",
            str(row["partitions"]),
            str(row["flush_size"]),
            f"{row['p50_seconds']:.2f}",
            f"{row['p99_seconds']:.2f}",
            f"{row['max_seconds']:.2f}",
        ]
        for row in rows
    ]
    lines += table(["rate", "records/s", "records", "partitions", "flush_size", "p50 s", "p99 s", "max s"], body)
    lines.append("")
    return lines


def render_control(section: dict) -> list[str]:
    lines = section_head("7. Control plane", section)
    rows = section.get("rows", [])
    if not rows:
        return lines
    lines.append(
        f"Pre-signed GET requests replayed by wrk over {section['connections']} keep-alive connections, paced "
        f"toward {section['target_rate']} requests/s; {rows[0]['tasks']} tasks RUNNING on an idle topic, 2 nodes "
        "per instance. ListConnectorTasks asks for `limit=50`."
    )
    lines.append("")
    body = [
        [
            row["operation"],
            f"{row['rate']:.0f}",
            f"{row['p50_us'] / 1000:.2f}",
            f"{row['p90_us'] / 1000:.2f}",
            f"{row['p99_us'] / 1000:.2f}",
            f"{row['max_us'] / 1000:.1f}",
            str(sum(row[key] for key in row if key.startswith("errors_"))),
            f"{row['server_cpu_seconds'] / (row['duration_us'] / 1e6):.2f}",
            load_text(row.get("load_average")),
        ]
        for row in rows
    ]
    lines += table(
        ["operation", "requests/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors", "server CPU cores", "load"], body
    )
    lines.append("")
    return lines


RENDERERS = {
    "dump": render_dump,
    "replication": render_replication,
    "scaling": render_scaling,
    "caps": render_caps,
    "memory": render_memory,
    "latency": render_latency,
    "control": render_control,
}


def render(results: dict) -> str:
    machine = results["machine"]
    versions = results["versions"]
    lines = [f"## Run of {results['started']} ({results['mode']})", ""]
    lines += [
        f"- Command: `{results['command']}`",
        f"- Machine: {machine['cores']} cores ({machine['cpu_model']}), {machine['memory_bytes'] / GiB:.1f} GiB, "
        f"Linux {machine['kernel']}",
        f"- Load average (1/5/15 min): {load_text(machine['load_average'])} at the start, "
        f"{load_text(results.get('load_after'))} at the end ({results['started']} to {results.get('finished')})",
        f"- Versions: weir {versions['weir_commit']} (`{versions['weir_binary']}`), {versions['tansu']} with "
        f"SQLite storage (`{results.get('broker_storage', 'n/a')}`), librdkafka {versions['librdkafka']} (rdkafka_performance and the weir binary), "
        f"s3s-fs {versions['s3s_fs']}, moto {versions['moto']}, {versions['wrk']}",
        "",
    ]
    targets = [target for section in results["sections"].values() for target in section.get("targets", [])]
    if targets:
        lines += ["### Targets", ""]
        lines += table(
            ["target", "measured", "result"],
            [[t["name"], t["value"], "met" if t["met"] else "**missed**"] for t in targets],
        )
        lines.append("")
    for name, section in results["sections"].items():
        lines += RENDERERS[name](section)
    return "\n".join(lines).rstrip() + "\n"


def write(results: dict, out_dir: Path | None, repo_root: Path) -> tuple[Path, Path]:
    """Write the JSON and the Markdown; return their paths."""
    rendered = render(results)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        json_path = out_dir / "results.json"
        page_path = out_dir / "BENCHMARKS.md"
        page_path.write_text("# Weir benchmarks\n\n" + rendered)
    else:
        stamp = results["started"].replace(":", "").replace("-", "")[:15]
        commit = results["versions"]["weir_commit"][:12]
        directory = repo_root / "bench" / "results"
        if results["mode"] == "quick":
            directory = directory / "quick"
        directory.mkdir(parents=True, exist_ok=True)
        json_path = directory / f"{stamp}-{commit}.json"
        if results["mode"] == "quick":
            page_path = directory / f"{stamp}-{commit}.md"
            page_path.write_text(rendered)
        else:
            page_path = repo_root / "BENCHMARKS.md"
            replace_results(page_path, rendered)
    json_path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    return json_path, page_path


def replace_results(page_path: Path, rendered: str) -> None:
    """Put `rendered` between the marker lines of the page, creating the page
    or the markers when they are missing."""
    text = page_path.read_text() if page_path.exists() else "# Weir benchmarks\n\n"
    block = f"{BEGIN}\n\n{rendered}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    page_path.write_text(text)
