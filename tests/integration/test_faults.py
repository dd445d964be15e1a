"""Exactly-once delivery under faults with steady production: node kill -9,
a node frozen past the Kafka session timeout (a zombie), a server kill -9
and restart, an object store that fails requests for a while, and a broker
restart."""

from __future__ import annotations

import os
import signal
import time

import pytest

from harness.kafka import SteadyProducer, merge_produced
from harness.objects import wait_for_dump
from harness.procs import kill_pid, wait_until
from harness.tasks import dump_format, local_reader, obs_task, s3_reader, sink_config
from harness.weir import process_is_stopped

PARTITIONS = 6
RECORDS_PER_SECOND = 300
SESSION_TIMEOUT_MS = 6000
# dead_after_ms above the freeze, so that the server does not replace the
# frozen node and it really comes back as a zombie.
FAULT_CONFIG = {"nodes": {"session_timeout_ms": SESSION_TIMEOUT_MS, "dead_after_ms": 30000}}
CARRIERS = (b"AA", b"UA", b"DL", b"B6", b"EV")


def flight_like(sequence: int) -> tuple[bytes, bytes, int]:
    """A small JSON record keyed by carrier, stamped with the current time."""
    carrier = CARRIERS[sequence % len(CARRIERS)]
    value = b'{"seq":%d,"carrier":"%s","payload":"%s"}' % (sequence, carrier, b"x" * 64)
    return carrier, value, int(time.time() * 1000)


def object_count(reader) -> int:
    return len(reader.store.list(reader.prefix))


def wait_for_progress(reader, timeout: float = 120) -> None:
    """Wait until at least one more object than now exists."""
    start = object_count(reader)
    wait_until(lambda: object_count(reader) > start, timeout=timeout, message=f"more than {start} objects")


@pytest.mark.faults
@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_exactly_once_under_faults(weir_server, broker, faulty_s3):
    server = weir_server(FAULT_CONFIG)
    api = server.api
    instance_id = server.instance_ids[0]
    bucket = faulty_s3.s3.create_bucket("faults-bucket")
    topic = broker.unique_topic("faults")
    broker.create_topic(topic, PARTITIONS)

    api.enable_connector(instance_id, {"node_cnt": 2})
    server.wait_node_count(2)
    sink = sink_config(bucket, "faults", s3_endpoint=faulty_s3.endpoint, flush_size=200, store_keys=True)
    task = api.create_task(instance_id, obs_task(topic, sink)).json()
    api.wait_task_status(instance_id, task["id"], "RUNNING")
    # Read through moto directly, not through the proxy.
    reader = s3_reader(faulty_s3.s3.client, bucket, "faults/")

    producer = SteadyProducer(broker, topic, PARTITIONS, flight_like, RECORDS_PER_SECOND).start()
    try:
        wait_for_progress(reader)

        # 1. kill -9 one node; the server starts a replacement.
        first, second = server.wait_node_count(2)
        assert kill_pid(first)
        wait_until(
            lambda: len(server.node_pids()) == 2 and first not in server.node_pids(),
            timeout=60,
            message="a replacement for the killed node",
        )
        wait_for_progress(reader)

        # 2. Freeze the other node past the session timeout, then let it go on.
        os.kill(second, signal.SIGSTOP)
        try:
            wait_until(lambda: process_is_stopped(second), timeout=10, message=f"node {second} to stop")
            time.sleep(SESSION_TIMEOUT_MS / 1000 * 2)
        finally:
            os.kill(second, signal.SIGCONT)
        wait_for_progress(reader)

        # 3. kill -9 the server and start it again on the same data directory.
        server.kill9()
        time.sleep(2)
        server.restart()
        server.wait_node_count(2, timeout=90)
        wait_for_progress(reader)

        # 4. The object store fails for about 20 s: HTTP 503, then resets.
        faulty_s3.fail_for(10, "http503")
        faulty_s3.fail_for(10, "reset")
        wait_for_progress(reader, timeout=180)
    finally:
        produced = producer.stop()

    total = sum(len(records) for records in produced.values())
    assert total > RECORDS_PER_SECOND * 30, f"only {total} records produced"
    result = wait_for_dump(
        reader,
        produced,
        dump_format(sink),
        topic,
        timeout=600,
        obs_path="faults",
        partition_format=sink["partition_format"],
    )
    assert sum(result.covered.values()) == total
    assert faulty_s3.counts["failed"] > 0, "the proxy failed no request, so the store fault was not exercised"
    assert api.show_task(instance_id, task["id"])["status"] == "RUNNING"


@pytest.mark.faults
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_exactly_once_across_broker_restart(weir_server, sqlite_broker):
    """The broker (SQLite storage, so it keeps its data) restarts between two
    periods of steady production while nodes dump the topic."""
    broker_process, kafka = sqlite_broker()
    server = weir_server(FAULT_CONFIG)
    api = server.api
    instance_id = api.add_instance("restartable-kafka", kafka.bootstrap, broker_num=1)
    api.enable_connector(instance_id, {"node_cnt": 2})
    topic = kafka.unique_topic("broker-restart")
    kafka.create_topic(topic, 3)
    sink = sink_config("restart", "broker", flush_size=100, store_keys=True)
    task = api.create_task(instance_id, obs_task(topic, sink)).json()
    api.wait_task_status(instance_id, task["id"], "RUNNING")
    reader = local_reader(server.data_dir, "restart", "broker/")

    # Production stops around the restart, because an idempotent producer
    # that lived through a tansu 0.6.0 restart was seen to get
    # UNKNOWN_SERVER_ERROR for every later record. A new producer takes over.
    before = SteadyProducer(kafka, topic, 3, flight_like, 200).start()
    try:
        wait_for_progress(reader)
    finally:
        produced = before.stop()
    broker_process.restart()
    after = SteadyProducer(kafka, topic, 3, lambda n: flight_like(n + 1_000_000), 200).start()
    try:
        wait_for_progress(reader, timeout=180)
        time.sleep(5)
    finally:
        merge_produced(produced, after.stop())

    total = sum(len(records) for records in produced.values())
    result = wait_for_dump(reader, produced, dump_format(sink), topic, timeout=300, obs_path="broker")
    assert sum(result.covered.values()) == total


def test_chunk_of_other_instance_is_not_adopted(weir_server, broker, sqlite_broker):
    """Two instances on two brokers dump a topic of the same name into one
    bucket and path. The second task finds the first one's objects at its own
    keys: it must not adopt them, which would skip its records, but report
    FAILING and leave the objects as they are."""
    server = weir_server()
    api = server.api
    first = server.instance_ids[0]
    _, other_broker = sqlite_broker()
    second = api.add_instance("second-kafka", other_broker.bootstrap, broker_num=1)
    topic = broker.unique_topic("shared-name")
    broker.create_topic(topic, 1)
    other_broker.create_topic(topic, 1)
    produced = broker.produce(topic, [(None, b"first-%d" % i, None) for i in range(10)], partition_of=lambda i, _: 0)
    other_broker.produce(topic, [(None, b"second-%d" % i, None) for i in range(10)], partition_of=lambda i, _: 0)
    sink = sink_config("shared", "same", flush_size=10)
    reader = local_reader(server.data_dir, "shared", "same/")

    api.enable_connector(first)
    api.create_task(first, obs_task(topic, sink))
    wait_for_dump(reader, produced, dump_format(sink), topic, timeout=120)
    api.enable_connector(second)
    task_id = api.create_task(second, obs_task(topic, sink)).json()["id"]

    def failing() -> dict | None:
        shown = api.show_task(second, task_id)
        return shown if shown.get("health") == "FAILING" else None

    shown = wait_until(failing, timeout=120, message="the second task to show FAILING")
    assert first in shown["error_msg"], shown
    assert "obs_path or bucket of its own" in shown["error_msg"], shown
    wait_for_dump(reader, produced, dump_format(sink), topic, timeout=10)
