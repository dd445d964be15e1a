"""Fixtures of the integration tests: a real Kafka broker (tansu), a real S3
server (moto), a fault proxy in front of it, `weir server` processes, the
signed API client and the flights data set.

Environment:
- WEIR_BIN: the weir binary (default target/debug/weir).
- WEIR_TANSU: the tansu binary (default $WEIR_CACHE/tansu-0.6.0/bin/tansu).
- WEIR_CACHE: cache directory (default ~/.cache/weir).
- WEIR_TEST_BOOTSTRAP: use this external Kafka instead of starting tansu.
- WEIR_TEST_TANSU_STORAGE: "sqlite" (default) or "memory" for the tansu broker.

Every process is started in its own process group, with its output in a log
file under the test's temporary directory. The report of a failed test ends
with the tails of the logs of the processes that ran during it.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
WEIR_CACHE = Path(os.environ.get("WEIR_CACHE", Path.home() / ".cache" / "weir"))
os.environ["WEIR_CACHE"] = str(WEIR_CACHE)
# Importing huaweicloudsdkcore writes $HOME/.huaweicloud/application_id, so
# point HOME at a scratch directory first (WEIR_CACHE above keeps the real one).
os.environ["HOME"] = str(REPO_ROOT / ".weir-test" / "home")
Path(os.environ["HOME"]).mkdir(parents=True, exist_ok=True)

import pytest  # noqa: E402

from harness import procs  # noqa: E402
from harness.flights import load_flights  # noqa: E402
from harness.kafka import Kafka, TansuBroker, wait_for_broker  # noqa: E402
from harness.s3 import ACCESS_KEY, SECRET_KEY, FaultyProxy, MotoServer, isolate_aws_environment  # noqa: E402
from harness.weir import WeirServer, deep_merge, default_config, new_key  # noqa: E402

# Set before any boto3 client exists: dummy credentials and no metadata service.
isolate_aws_environment()

WEIR_BIN = Path(os.environ.get("WEIR_BIN", REPO_ROOT / "target" / "debug" / "weir"))
TANSU_BIN = Path(os.environ.get("WEIR_TANSU", WEIR_CACHE / "tansu-0.6.0" / "bin" / "tansu"))
MOTO_BIN = Path(sys.executable).parent / "moto_server"

# Partitions of the shared flights topic.
FLIGHTS_PARTITIONS = 6

_servers: list[WeirServer] = []


def _stop_everything() -> None:
    """Stop every server (with its nodes) and every other process still running."""
    for server in list(_servers):
        server.stop()
    for process in reversed(procs.STARTED):
        if process.alive():
            process.stop(grace=5)


def _stop_on_signal(signum, frame) -> None:
    # Processes run in their own sessions, so a SIGTERM or SIGHUP to pytest
    # (a CI time-out, a closed terminal) would leave them running.
    _stop_everything()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def pytest_configure(config):
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_on_signal)
    atexit.register(_stop_everything)


# ---- failure reports ----------------------------------------------------------

# Start time of the running test, so that its report lists the processes that ran during it.
_START_KEY = pytest.StashKey[float]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if call.when == "setup":
        item.stash[_START_KEY] = call.start
    if not report.failed:
        return
    started = item.stash.get(_START_KEY, call.start)
    for process in procs.STARTED:
        if process.started_at is None:
            continue
        if process.stopped_at is not None and process.stopped_at < started:
            continue
        report.sections.append((f"log of {process.name} ({process.log_path})", process.log_tail()))
    for server in _servers:
        for path in sorted(server.data_dir.rglob("*.log"))[:5]:
            report.sections.append((f"log {path}", procs.tail(path, 80)))


def _require_binary(path: Path, how: str) -> Path:
    if not path.exists():
        pytest.fail(f"{path} not found; {how}", pytrace=False)
    return path


# ---- broker -------------------------------------------------------------------


@pytest.fixture(scope="session")
def tansu_bin() -> Path:
    return _require_binary(TANSU_BIN, "run scripts/setup-test-env.sh tansu")


@pytest.fixture(scope="session")
def broker(tmp_path_factory, tansu_bin) -> Kafka:
    """The Kafka broker of the session: tansu on a free loopback port, or
    WEIR_TEST_BOOTSTRAP when set."""
    external = os.environ.get("WEIR_TEST_BOOTSTRAP")
    if external:
        wait_for_broker(external, timeout=30)
        yield Kafka(external)
        return
    work_dir = tmp_path_factory.mktemp("broker")
    # NOTE: sqlite is the default although memory:// is faster, because
    # tansu 0.6.0's memory engine mishandles batches of several records. A
    # fetch from an offset inside a batch returns the next batch, so a
    # consumer that resumes mid-batch (after a commit or a rebalance) skips
    # records. ListOffsets(latest) returns the newest batch's base offset + 1.
    if os.environ.get("WEIR_TEST_TANSU_STORAGE", "sqlite") == "memory":
        storage = "memory"
    else:
        storage = work_dir / "tansu.db"
    server = TansuBroker(tansu_bin, work_dir, storage=storage).start()
    kafka = Kafka(server.bootstrap)
    kafka.server = server
    yield kafka
    server.stop()


@pytest.fixture
def sqlite_broker(tmp_path, tansu_bin):
    """Start tansu brokers backed by sqlite://FILE, which keep their data
    across a restart (broker.restart())."""
    started = []

    def start() -> tuple[TansuBroker, Kafka]:
        server = TansuBroker(tansu_bin, tmp_path, storage=tmp_path / f"tansu-{len(started)}.db").start()
        started.append(server)
        return server, Kafka(server.bootstrap)

    yield start
    for server in started:
        server.stop()


# ---- object storage -----------------------------------------------------------


@pytest.fixture(scope="session")
def s3(tmp_path_factory) -> MotoServer:
    """moto in server mode on a free loopback port, with a boto3 client."""
    server = MotoServer(_require_binary(MOTO_BIN, "run scripts/setup-test-env.sh venv"), tmp_path_factory.mktemp("moto"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def faulty_s3(s3) -> FaultyProxy:
    """A proxy in front of the session's moto that tests switch to fail
    requests (HTTP 503, connection resets) and heal again."""
    proxy = FaultyProxy(s3.port).start()
    proxy.s3 = s3
    yield proxy
    proxy.stop()


def s3_bucket_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# ---- weir ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def weir_bin() -> Path:
    return _require_binary(WEIR_BIN, "build it with `cargo build` (scripts/test.sh does)")


def _start_server(
    weir_bin: Path,
    work_dir: Path,
    bootstrap: str,
    overrides: dict | None,
    instances: int,
    name: str,
) -> WeirServer:
    """Start a server whose config has a key of its own project and one key
    of another project (server.other_key), for isolation tests."""
    key = new_key()
    other_key = new_key()
    config = deep_merge(default_config(bootstrap, key, instances, (other_key,)), overrides or {})
    server = WeirServer(weir_bin, work_dir, config, key, name=name)
    server.other_key = other_key
    _servers.append(server)
    _every_server.append(server)
    server.start()
    return server


# Every server of the session, for the secret scan of their logs at the end.
_every_server: list[WeirServer] = []


def find_secrets_in_logs(servers: list[WeirServer]) -> list[str]:
    """Return "<secret name> in <file>" for every secret of the session found in
    a server or node log: the API secret keys of every server, the secret of
    each initial key, and the OBS credentials the test tasks use."""
    findings = []
    for server in servers:
        secret_values = {
            "API secret key": server.key.secret_key,
            "OBS access key": ACCESS_KEY,
            "OBS secret key": SECRET_KEY,
        }
        if server.other_key is not None:
            secret_values["other project's API secret key"] = server.other_key.secret_key
        initial = server.data_dir / "initial-key.json"
        if initial.exists():
            secret_values["initial API secret key"] = json.loads(initial.read_text())["secret_key"]
        logs = [server.log_path, *sorted((server.data_dir / "logs").glob("*.log"))]
        for path in logs:
            if not path.exists():
                continue
            data = path.read_bytes()
            findings += [f"{name} in {path}" for name, value in secret_values.items() if value.encode() in data]
    return findings


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_logs():
    """Fail the session when any server or node log of the run contains a secret."""
    yield
    findings = find_secrets_in_logs(_every_server)
    assert not findings, "secrets found in logs: " + "; ".join(findings)


@pytest.fixture
def weir_server(tmp_path, weir_bin, broker):
    """Start `weir server` processes: weir_server(config_overrides, instances=1).

    The config (see harness.weir.default_config) has one API key, the given
    number of instances on the test broker, a 1 MB/s specification "1MB" and
    a 64 MiB node profile "kafka.test.small". The overrides are merged into it.
    """
    started: list[WeirServer] = []

    def start(config_overrides: dict | None = None, instances: int = 1) -> WeirServer:
        name = f"weir-{len(started)}"
        server = _start_server(weir_bin, tmp_path / name, broker.bootstrap, config_overrides, instances, name)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        _servers.remove(server)


@pytest.fixture(scope="module")
def module_server(tmp_path_factory, weir_bin, broker):
    """One server shared by the tests of a module (API shape tests)."""
    server = _start_server(weir_bin, tmp_path_factory.mktemp("weir"), broker.bootstrap, None, 1, "weir-module")
    yield server
    server.stop()
    _servers.remove(server)


@pytest.fixture
def fresh_instance(module_server, broker):
    """A newly registered instance on the module server, with no connector."""
    return module_server.api.add_instance(f"inst-{uuid.uuid4().hex[:6]}", broker.bootstrap, broker_num=1)


# ---- data ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def flights():
    """All 336,776 flights as records (key, value, timestamp_ms)."""
    return load_flights()


@pytest.fixture(scope="session")
def flights_topic(broker, flights):
    """A topic with every flight, produced round-robin over 6 partitions.

    Returns (topic, produced), produced mapping partition -> records as the
    delivery reports confirmed them.
    """
    topic = broker.unique_topic("flights")
    broker.create_topic(topic, FLIGHTS_PARTITIONS)
    started = time.monotonic()
    produced = broker.produce(
        topic,
        ((flight.key, flight.value, flight.timestamp_ms) for flight in flights),
        partition_of=lambda index, _: index % FLIGHTS_PARTITIONS,
    )
    count = sum(len(records) for records in produced.values())
    assert count == len(flights), f"{count} of {len(flights)} flights delivered"
    print(f"produced {count} flights to {topic} in {time.monotonic() - started:.1f} s")
    return topic, produced

