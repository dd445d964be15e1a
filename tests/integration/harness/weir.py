"""`weir server` as a managed process: configuration file, start, health
wait, kill -9 and restart on the same data directory, and its node processes.
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import requests

from .api import ApiClient, Key
from .procs import ManagedProcess, find_processes, free_port, tail, wait_until

# ---- TOML ---------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML: {value!r}")


def to_toml(config: dict[str, Any]) -> str:
    """Write a two-level config: tables of scalars and arrays of tables.

    Nested dicts inside a table (such as nodes.kafka) become inline tables.
    """
    lines = []
    for name, section in config.items():
        if isinstance(section, dict):
            lines.append(f"[{name}]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in section.items()]
            lines.append("")
        elif isinstance(section, list) and all(isinstance(item, dict) for item in section):
            for item in section:
                lines.append(f"[[{name}]]")
                lines += [f"{key} = {_toml_value(value)}" for key, value in item.items()]
                lines.append("")
        else:
            raise TypeError(f"top-level key {name!r} must be a table or an array of tables")
    return "\n".join(lines)


def deep_merge(base: dict, overrides: dict) -> dict:
    """Return base with overrides applied; dicts merge, other values replace."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# ---- server -------------------------------------------------------------------


def new_key(project_id: str | None = None) -> Key:
    return Key(
        access_key="AK" + secrets.token_hex(9).upper(),
        secret_key="SK" + secrets.token_hex(19),
        project_id=project_id or uuid.uuid4().hex,
    )


def default_config(
    bootstrap: str, key: Key, instance_count: int = 1, extra_keys: tuple[Key, ...] = ()
) -> dict[str, Any]:
    """A small configuration: the API key `key` (plus `extra_keys`, of other
    projects), `instance_count` instances of key's project on the test
    broker, a 1 MB/s specification and a 64 MiB node profile.

    Node timings are shortened so that failures are detected within seconds.
    """
    instances = [
        {
            "id": str(uuid.uuid4()),
            "project_id": key.project_id,
            "name": f"kafka-{index + 1}",
            "bootstrap_servers": bootstrap,
            "specification": "100MB",
            "broker_num": 1,
        }
        for index in range(instance_count)
    ]
    return {
        "server": {"timezone": "UTC"},
        "keys": [
            {
                "access_key": k.access_key,
                "secret_key": k.secret_key,
                "project_id": k.project_id,
                "admin": k is key,
            }
            for k in (key, *extra_keys)
        ],
        "instances": instances,
        "specifications": [{"name": "1MB", "bytes_per_second": 1_048_576}],
        "node_profiles": [{"spec_code": "kafka.test.small", "memory_budget_bytes": 64 * 1024 * 1024}],
        "nodes": {
            "spawn": True,
            "heartbeat_interval_ms": 500,
            "dead_after_ms": 5000,
            "restart_backoff_initial_ms": 200,
            "restart_backoff_max_ms": 2000,
            "session_timeout_ms": 6000,
            "kafka": {"fetch.wait.max.ms": "10"},
        },
    }


class WeirServer:
    """One `weir server` with its data directory, config file and log."""

    def __init__(self, binary: Path, work_dir: Path, config: dict[str, Any], key: Key, name: str = "weir"):
        self.binary = Path(binary)
        self.work_dir = Path(work_dir)
        self.data_dir = self.work_dir / "data"
        self.config_path = self.work_dir / "weir.toml"
        self.config = config
        self.key = key
        self.other_key: Key | None = None  # a key of another project, if configured
        self.name = name
        self.port = free_port()
        self.listen = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.listen}"
        self.process: ManagedProcess | None = None
        self.restarts = 0
        self.api = ApiClient(self.url, key)
        # Extra environment variables (such as WEIR_MASTER_KEY) and arguments
        # of `weir server`.
        self.extra_env: dict[str, str] = {}
        self.extra_args: list[str] = []
        self.data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def instance_ids(self) -> list[str]:
        return [instance["id"] for instance in self.config.get("instances", [])]

    @property
    def log_path(self) -> Path:
        return self.work_dir / f"{self.name}.log"

    def write_config(self) -> None:
        self.config_path.write_text(to_toml(self.config))

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
        env.setdefault("RUST_LOG", "info")
        env["RUST_BACKTRACE"] = "1"
        env.update(self.extra_env)
        return env

    def command(self) -> list:
        """Return the argv of `weir server` for this server."""
        return [
            self.binary,
            "server",
            "--data-dir",
            self.data_dir,
            "--listen",
            self.listen,
            "--config",
            self.config_path,
            *self.extra_args,
        ]

    def start(self, timeout: float = 60) -> "WeirServer":
        self.write_config()
        self.process = ManagedProcess(
            self.name,
            self.command(),
            self.log_path,
            env=self.environment(),
            cwd=self.work_dir,
        ).start()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 60) -> None:
        def healthy() -> bool:
            if self.process is None or not self.process.alive():
                raise AssertionError(f"weir server exited early:\n{tail(self.log_path)}")
            try:
                response = requests.get(f"{self.url}/healthz", timeout=2)
            except requests.ConnectionError:
                return False
            return response.status_code == 200

        wait_until(healthy, timeout=timeout, interval=0.1, message=f"GET {self.url}/healthz == 200")

    def kill9(self) -> None:
        """Kill the server process alone with SIGKILL, as a crash would.

        Its node processes are left to whatever the server arranged for them
        (they may exit on their own when the server goes away).
        """
        assert self.process is not None
        self.process.kill9()

    def restart(self, timeout: float = 60) -> None:
        """Start the server again on the same port, data dir and config."""
        if self.process is not None and self.process.alive():
            self.process.stop()
        self.restarts += 1
        self.start(timeout)

    def stop(self) -> None:
        """Stop the server's process group and every node that is still alive."""
        if self.process is not None:
            self.process.stop()
        for pid in self.node_pids():
            try:
                os.kill(pid, signal.SIGCONT)
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def node_pids(self) -> list[int]:
        """Return the ids of live `weir node` processes that talk to this server."""
        def is_our_node(argv: list[str]) -> bool:
            return (
                len(argv) >= 2
                and "weir" in os.path.basename(argv[0])
                and argv[1] == "node"
                and any(arg.startswith(self.url) or arg.endswith(f":{self.port}") for arg in argv)
            )

        return find_processes(is_our_node)

    def wait_node_count(self, count: int, timeout: float = 60) -> list[int]:
        """Wait until exactly `count` node processes are alive; return their ids."""
        def enough() -> tuple[list[int]] | None:
            pids = self.node_pids()
            # A one-element tuple is truthy even when pids is empty.
            return (pids,) if len(pids) == count else None

        found = wait_until(
            enough, timeout=timeout, interval=0.2, message=lambda: f"{count} node processes (found {self.node_pids()})"
        )
        return found[0]

    def metrics(self) -> str:
        response = requests.get(f"{self.url}/metrics", timeout=10)
        response.raise_for_status()
        return response.text

    def start_node(self, connector_id: str, token: str, log_dir: Path, node_id: str | None = None) -> ManagedProcess:
        """Start a `weir node` by hand (for servers with nodes.spawn = false)."""
        argv = [self.binary, "node", "--server", self.url, "--connector", connector_id, "--token", token]
        if node_id:
            argv += ["--node-id", node_id]
        name = f"node-{node_id or uuid.uuid4().hex[:6]}"
        return ManagedProcess(name, argv, log_dir / f"{name}.log", env=self.environment()).start()


def run_cli(binary: Path, args: list[str], server: WeirServer, key: Key | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a `weir` client command against the server with WEIR_* variables."""
    key = key or server.key
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
    env.update(
        {
            "WEIR_ENDPOINT": server.url,
            "WEIR_PROJECT_ID": key.project_id,
            "WEIR_ACCESS_KEY": key.access_key,
            "WEIR_SECRET_KEY": key.secret_key,
        }
    )
    return subprocess.run(
        [str(binary), *args], env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def process_is_stopped(pid: int) -> bool:
    """Return whether pid is in the stopped state (after SIGSTOP)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            state = file.read().rsplit(b")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state in (b"T", b"t")

