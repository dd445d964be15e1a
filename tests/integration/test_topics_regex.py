r"""Dumps of `topics_regex` tasks, which nodes match with the Rust `regex`
crate, the engine the server validates patterns with, and subscribe to by
name.

The pattern `(a|aa)+$` against a name of many `a`s followed by `b` takes a
backtracking engine exponential time (the server rejects the worse `(a+)+$`
outright). librdkafka's regex subscription uses
its bundled backtracking engine where the C library has no POSIX regex, and
the POSIX engine otherwise, which reads Rust syntax such as `\d`
differently. The nodes must stay responsive (heartbeats, dumps, a matching
topic created later is picked up) and match with Rust's syntax.
"""

from __future__ import annotations

import time
import uuid

import pytest

from harness.objects import LocalBucket, wait_for_dump
from harness.tasks import dump_format, local_reader, obs_task, sink_config

BUCKET = "regex"
REFRESH_MS = 2000
RECORDS = 12
FLUSH_SIZE = 4
# About 1.6^64 backtracking steps for "(a|aa)+$" against this name.
HOSTILE_AS = 64


def produce(broker, topic: str, label: str):
    records = [(None, f"{label}-{index}".encode(), None) for index in range(RECORDS)]
    return broker.produce(topic, records, partition_of=lambda index, _: 0)


def start_regex_task(server, pattern: str, sink: dict) -> str:
    """Enable Smart Connect on the server's instance and start a task with `pattern`."""
    api = server.api
    instance_id = server.instance_ids[0]
    api.enable_connector(instance_id)
    body = obs_task("unused", sink)
    del body["topics"]
    body["topics_regex"] = pattern
    task_id = api.create_task(instance_id, body).json()["id"]
    api.wait_task_status(instance_id, task_id, "RUNNING", timeout=120)
    return task_id


def dumped_keys(server, topic: str) -> list[str]:
    return [key for key, _ in LocalBucket(server.data_dir, BUCKET).list(f"dump/{topic}/")]


def heartbeats(api, instance_id: str) -> dict[str, int]:
    shown = api.show_instance(instance_id)
    return {node["node_id"]: node["last_heartbeat"] for node in shown["connector_nodes"] if node["status"] == "RUNNING"}


@pytest.mark.timeout(600)
def test_regex_catastrophic_topic_does_not_hang(weir_server, broker):
    server = weir_server({"nodes": {"topic_refresh_interval_ms": REFRESH_MS}})
    api = server.api
    instance_id = server.instance_ids[0]

    prefix = f"rx{uuid.uuid4().hex[:6]}-"
    matching = prefix + "aaa"
    hostile = prefix + "a" * HOSTILE_AS + "b"
    other = prefix + "ab"
    for topic in (matching, hostile, other):
        broker.create_topic(topic, 1)
    produced = produce(broker, matching, "matching")
    produce(broker, hostile, "hostile")
    produce(broker, other, "other")

    sink = sink_config(BUCKET, "dump", flush_size=FLUSH_SIZE, deliver_time_interval=30)
    # (a|aa)+$ passes the server's check (no repetition inside a repetition)
    # but takes a backtracking engine time exponential in the run of a's.
    task_id = start_regex_task(server, prefix + "(a|aa)+$", sink)

    fmt = dump_format(sink)
    wait_for_dump(local_reader(server.data_dir, BUCKET, f"dump/{matching}/"), produced, fmt, matching, timeout=180)

    # A matching topic created after the start is picked up at a topic check.
    late = prefix + "aaaa"
    broker.create_topic(late, 1)
    late_produced = produce(broker, late, "late")
    wait_for_dump(local_reader(server.data_dir, BUCKET, f"dump/{late}/"), late_produced, fmt, late, timeout=180)

    for topic in (hostile, other):
        keys = dumped_keys(server, topic)
        assert keys == [], f"{topic} does not match the pattern but was dumped: {keys[:5]}"

    before = heartbeats(api, instance_id)
    assert len(before) == 2, f"live nodes: {before}"
    time.sleep(3 * server.config["nodes"]["heartbeat_interval_ms"] / 1000)
    after = heartbeats(api, instance_id)
    assert set(after) == set(before), f"nodes changed: {before} -> {after}"
    for node_id, beat in before.items():
        assert after[node_id] > beat, f"node {node_id} stopped sending heartbeats"
    shown = api.show_task(instance_id, task_id)
    assert shown["status"] == "RUNNING"
    assert shown["health"] == "HEALTHY", shown.get("error_msg")
    api.delete_task(instance_id, task_id)


@pytest.mark.timeout(600)
def test_regex_uses_rust_syntax(weir_server, broker):
    # In glibc's POSIX syntax `\d` is the letter d and `(?i)` does not
    # compile. The server validated both as Rust syntax, so they must match
    # as Rust syntax.
    server = weir_server({"nodes": {"topic_refresh_interval_ms": REFRESH_MS}})
    prefix = f"rx{uuid.uuid4().hex[:6]}-"
    digits = prefix + "42"
    letter = prefix + "d"
    upper = prefix.upper() + "X1"
    for topic in (digits, letter, upper):
        broker.create_topic(topic, 1)
    produced = {topic: produce(broker, topic, topic) for topic in (digits, letter, upper)}

    sink = sink_config(BUCKET, "dump", flush_size=FLUSH_SIZE, deliver_time_interval=30)
    task_id = start_regex_task(server, f"(?i){prefix}(\\d+|x\\d)$", sink)

    fmt = dump_format(sink)
    for topic in (digits, upper):
        reader = local_reader(server.data_dir, BUCKET, f"dump/{topic}/")
        wait_for_dump(reader, produced[topic], fmt, topic, timeout=180)
    keys = dumped_keys(server, letter)
    assert keys == [], f"{letter} does not match the pattern but was dumped: {keys[:5]}"
    server.api.delete_task(server.instance_ids[0], task_id)
