"""Section "control": requests per second and latency of ShowConnectorTask
and ListConnectorTasks with 100 tasks defined, replayed by wrk.

A request signed once stays valid while its X-Sdk-Date is within 15 minutes
of the server's clock, so each request is signed once and replayed.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from pathlib import Path

import requests

from harness.tasks import obs_task, sink_config

from . import system
from .context import Context

TASKS_PER_INSTANCE = 17  # the task quota of an instance is 18
TARGET_RATE = 1000  # requests per second
CONNECTIONS = 10
P99_TARGET_MS = 10.0
# librdkafka's default fetch wait, so that 200 idle consumers of the 100
# tasks poll the broker 2 times a second each instead of 10.
IDLE_KAFKA_SETTINGS = {"fetch.wait.max.ms": "500"}


def write_requests(path: Path, client, signed: list[tuple[str, str, list]]) -> None:
    """Sign each (method, path, query) once and write wrk's request file."""
    lines = []
    for method, request_path, query in signed:
        uri, headers = client.sign(method, request_path, query)
        fields = [method, uri] + [f"{name}: {value}" for name, value in headers.items()]
        if any("\t" in field or "\n" in field for field in fields):
            raise ValueError(f"request {uri} has a tab or newline in a header")
        lines.append("\t".join(fields))
    path.write_text("\n".join(lines) + "\n")


def check_requests(url: str, path: Path) -> None:
    """Send every pre-signed request once; raise unless each returns 200."""
    for line in path.read_text().splitlines():
        method, uri, *header_fields = line.split("\t")
        headers = dict(field.split(": ", 1) for field in header_fields)
        response = requests.request(method, url + uri, headers=headers, timeout=10)
        if response.status_code != 200:
            raise AssertionError(f"{method} {uri}: HTTP {response.status_code}: {response.text[:500]}")


def run_wrk(wrk: Path, url: str, request_file: Path, seconds: float, pause_ms: float) -> dict:
    script = Path(__file__).resolve().parents[1] / "wrk" / "replay.lua"
    argv = [
        str(wrk),
        "-t1",
        f"-c{CONNECTIONS}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        str(script),
        url,
        "--",
        str(request_file),
        str(max(0, int(pause_ms))),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, stdin=subprocess.DEVNULL)
    for line in result.stdout.splitlines():
        if line.startswith("WRK_RESULT "):
            data = json.loads(line.removeprefix("WRK_RESULT "))
            data["rate"] = data["requests"] / (data["duration_us"] / 1e6)
            data["pause_ms"] = int(pause_ms)
            data["argv"] = argv
            return data
    raise AssertionError(f"wrk printed no result (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")


def define_tasks(ctx: Context, server, task_count: int) -> list[tuple[str, str]]:
    """Create `task_count` OBS_SINK tasks on an idle topic, 17 per instance,
    and wait until all are RUNNING; return (instance_id, task_id) pairs."""
    topic = ctx.kafka.unique_topic("control-idle")
    ctx.kafka.create_topic(topic, 1)
    tasks: list[tuple[str, str]] = []
    while len(tasks) < task_count:
        connector = server.enable(2, "100MB", "kafka.c3.mini.connector")
        for _ in range(min(TASKS_PER_INSTANCE, task_count - len(tasks))):
            sink = sink_config(f"control-{len(tasks)}", "bench", None, deliver_time_interval=300)
            created = server.api.create_task(connector.instance_id, obs_task(topic, sink)).json()
            tasks.append((connector.instance_id, created["id"]))

    deadline = time.monotonic() + 180
    for instance_id, task_id in tasks:
        server.api.wait_task_status(instance_id, task_id, "RUNNING", timeout=max(1, deadline - time.monotonic()))
    return tasks


def measure(ctx: Context, server, name: str, signed: list, seconds: float) -> dict:
    """Replay one operation's pre-signed requests with wrk; return its row."""
    url = server.server.url
    request_file = ctx.work_dir / f"requests-{name}.tsv"
    write_requests(request_file, server.api, signed)
    check_requests(url, request_file)

    # Calibrate the pause per connection from a short run, so that the
    # offered rate comes close to TARGET_RATE.
    pause = CONNECTIONS * 1000 / TARGET_RATE
    probe = run_wrk(ctx.tools.wrk, url, request_file, 2, pause)
    latency_ms = CONNECTIONS * 1000 / max(probe["rate"], 1) - pause
    pause = max(0.0, CONNECTIONS * 1000 / TARGET_RATE - max(latency_ms, 0.0))

    load = system.load_average()
    server_cpu = system.CpuMeter([server.server.process.pid]).start()
    nodes_cpu = system.CpuMeter(server.server.node_pids()).start()
    result = run_wrk(ctx.tools.wrk, url, request_file, seconds, pause)
    result["server_cpu_seconds"] = server_cpu.stop()
    result["node_cpu_seconds"] = nodes_cpu.stop()
    result["operation"] = name
    result["distinct_requests"] = len(signed)
    result["load_average"] = load
    return result


def run_control(ctx: Context) -> dict:
    task_count = 20 if ctx.quick else 100
    seconds = 3 if ctx.quick else 30
    instances = math.ceil(task_count / TASKS_PER_INSTANCE)
    server = ctx.start_server(instances=instances, kafka_settings=IDLE_KAFKA_SETTINGS)
    ctx.log(f"control: {task_count} tasks on {instances} instances")
    tasks = define_tasks(ctx, server, task_count)
    ctx.log("control: every task RUNNING")

    api = server.api
    operations = {
        "ShowConnectorTask": [
            ("GET", api.v2(f"{api.instance_path(instance_id)}/connector/tasks/{task_id}"), [])
            for instance_id, task_id in tasks
        ],
        "ListConnectorTasks": [
            ("GET", api.v2(f"{api.instance_path(connector.instance_id)}/connector/tasks"), [("limit", 50), ("offset", 0)])
            for connector in server.connectors
        ],
    }
    rows = []
    targets = []
    for name, signed in operations.items():
        result = measure(ctx, server, name, signed, seconds)
        result["tasks"] = task_count
        rows.append(result)
        errors = sum(result[key] for key in result if key.startswith("errors_"))
        p99_ms = result["p99_us"] / 1000
        targets.append(
            {
                "name": f"{name} p99 < {P99_TARGET_MS:.0f} ms at about {TARGET_RATE} requests/s",
                "value": f"p99 {p99_ms:.2f} ms at {result['rate']:.0f} requests/s, {errors} errors",
                "met": p99_ms < P99_TARGET_MS and errors == 0 and result["rate"] >= 0.9 * TARGET_RATE,
            }
        )
        ctx.log(f"control: {name}: {result['rate']:.0f} req/s, p50 {result['p50_us'] / 1000:.2f} ms, p99 {p99_ms:.2f} ms")
    server.server.stop()
    return {"rows": rows, "targets": targets, "connections": CONNECTIONS, "target_rate": TARGET_RATE}
