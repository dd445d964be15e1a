"""KAFKA_REPLICATOR_SOURCE tasks between two tansu brokers, each its own
cluster: directions, renaming and mapping, regex topics, loop-free two-way
replication, `latest`, node crashes, and the documented errors."""

from __future__ import annotations

import collections
import signal
import os
import re
import time
import uuid

import pytest

from harness.kafka import TansuBroker
from harness.procs import wait_until
from harness.replication import produce_ids, read_topic, wait_for_values
from harness.tasks import task_name

PROVENANCE = "weir-provenance"


@pytest.fixture(scope="module")
def peer(tmp_path_factory, tansu_bin):
    """A second broker, the peer cluster of the tests."""
    work_dir = tmp_path_factory.mktemp("peer")
    server = TansuBroker(tansu_bin, work_dir, storage=work_dir / "peer.db").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def repl_server(tmp_path_factory, weir_bin, broker):
    """A server with one instance on the main broker, two nodes per connector
    and a 1 s topic refresh."""
    from conftest import _servers, _start_server

    overrides = {"nodes": {"topic_refresh_interval_ms": 1000}}
    server = _start_server(weir_bin, tmp_path_factory.mktemp("weir-repl"), broker.bootstrap, overrides, 1, "weir-repl")
    server.api.enable_connector(server.instance_ids[0])
    yield server
    server.stop()
    _servers.remove(server)


def create_topic(bootstrap: str, name: str, partitions: int) -> str:
    from harness.kafka import Kafka

    return Kafka(bootstrap).create_topic(name, partitions)


def replicator_task(topics: str | None = None, regex: str | None = None, **source) -> dict:
    body = {
        "task_name": task_name("repl"),
        "source_type": "KAFKA_REPLICATOR_SOURCE",
        "source_task": {"consumer_strategy": "earliest", **source},
        "sink_type": "NONE",
    }
    if topics is not None:
        body["topics"] = topics
    if regex is not None:
        body["topics_regex"] = regex
    return body


def start_task(server, body: dict) -> dict:
    instance_id = server.instance_ids[0]
    created = server.api.create_task(instance_id, body).json()
    server.api.wait_task_status(instance_id, created["id"], "RUNNING")
    return created


def values_of(records) -> collections.Counter:
    return collections.Counter(record.value for record in records)


def test_pull_keeps_partition_key_headers_timestamp(repl_server, broker, peer):
    topic = create_topic(peer.bootstrap, f"pull-{uuid.uuid4().hex[:6]}", 3)
    sent = produce_ids(peer.bootstrap, topic, "p", 300, 3, headers=[("trace", b"t1")])
    created = start_task(repl_server, replicator_task(topic, bootstrap_servers=peer.bootstrap, direction="pull"))
    assert created["source_task"]["direction"] == "pull"
    assert "password" not in created["source_task"]
    assert created["sink_task"] == {}

    copied = wait_for_values(broker.bootstrap, topic, set(sent))
    source = {record.value: record for record in read_topic(peer.bootstrap, topic)}
    assert len(copied) == 300, f"{len(copied)} records, duplicates: {values_of(copied).most_common(3)}"
    for record in copied:
        original = source[record.value]
        assert record.partition == original.partition
        assert record.key == original.key
        assert record.timestamp == original.timestamp
        assert record.header("trace") == b"t1"
        assert record.header(PROVENANCE) is None


def test_push_with_rename(repl_server, broker, peer):
    topic = create_topic(broker.bootstrap, f"push-{uuid.uuid4().hex[:6]}", 2)
    sent = produce_ids(broker.bootstrap, topic, "r", 100, 2)
    start_task(
        repl_server,
        replicator_task(
            topic,
            bootstrap_servers=peer.bootstrap,
            direction="push",
            rename_topic_enabled=True,
            current_cluster_name="east",
            cluster_name="west",
        ),
    )
    copied = wait_for_values(peer.bootstrap, f"east.{topic}", set(sent))
    assert len(copied) == 100


def test_pull_by_instance_id_with_mapping(repl_server, broker, peer):
    api = repl_server.api
    peer_id = api.add_instance(task_name("peer"), peer.bootstrap, broker_num=1)
    source_topic = create_topic(peer.bootstrap, f"map-src-{uuid.uuid4().hex[:6]}", 2)
    target_topic = f"map-dst-{uuid.uuid4().hex[:6]}"
    sent = produce_ids(peer.bootstrap, source_topic, "m", 50, 2)
    created = start_task(
        repl_server,
        replicator_task(source_topic, instance_id=peer_id, topics_mapping=f"{source_topic}:{target_topic}"),
    )
    assert created["source_task"]["instance_id"] == peer_id
    copied = wait_for_values(broker.bootstrap, target_topic, set(sent))
    assert len(copied) == 50
    assert {record.partition for record in copied} == {0, 1}


def test_regex_picks_up_new_topic(repl_server, broker, peer):
    prefix = f"rx-{uuid.uuid4().hex[:6]}"
    first = create_topic(peer.bootstrap, f"{prefix}-one", 1)
    start_task(repl_server, replicator_task(regex=f"{prefix}-.*", bootstrap_servers=peer.bootstrap))
    later = create_topic(peer.bootstrap, f"{prefix}-two", 2)
    created_at = time.monotonic()
    sent_first = produce_ids(peer.bootstrap, first, "x1", 20, 1)
    sent_later = produce_ids(peer.bootstrap, later, "x2", 20, 2)
    wait_for_values(broker.bootstrap, first, set(sent_first))
    copied = wait_for_values(broker.bootstrap, later, set(sent_later), timeout=60)
    print(f"new topic replicated {time.monotonic() - created_at:.1f} s after it was created")
    assert len(copied) == 20


def test_pull_from_own_cluster_copies_nothing(repl_server, broker):
    """A peer address that reaches the instance's own cluster is rejected by
    cluster id when the task runs, so the task shows FAILING. The topic does
    not grow, and offset sync leaves a stopped group where it was."""
    api = repl_server.api
    instance_id = repl_server.instance_ids[0]
    topic = create_topic(broker.bootstrap, f"self-{uuid.uuid4().hex[:6]}", 1)
    produce_ids(broker.bootstrap, topic, "s", 10, 1)
    group = f"app-self-{uuid.uuid4().hex[:6]}"
    assert len(consume_as_group(broker.bootstrap, group, topic, 1, count=3)) == 3
    own_address = broker.bootstrap.replace("127.0.0.1", "localhost")
    body = replicator_task(topic, bootstrap_servers=own_address, direction="pull", sync_consumer_offsets_enabled=True)
    created = api.create_task(instance_id, body).json()

    def failing() -> dict | None:
        shown = api.show_task(instance_id, created["id"])
        return shown if shown.get("health") == "FAILING" and shown.get("error_msg") else None

    shown = wait_until(failing, timeout=120, message="the task to show FAILING")
    assert "same cluster" in shown["error_msg"], shown["error_msg"]
    assert len(read_topic(broker.bootstrap, topic)) == 10
    assert group_offsets(broker.bootstrap, group, topic, 1) == {0: 3}
    api.delete_task(instance_id, created["id"])


def test_latest_skips_history(repl_server, broker, peer):
    topic = create_topic(peer.bootstrap, f"latest-{uuid.uuid4().hex[:6]}", 2)
    before = produce_ids(peer.bootstrap, topic, "old", 40, 2)
    start_task(repl_server, replicator_task(topic, bootstrap_servers=peer.bootstrap, consumer_strategy="latest"))
    # The target topic is created by the task; wait for it before producing,
    # so that the check below is about `latest`, not about timing.
    wait_until(lambda: topic in read_topics(broker.bootstrap), timeout=60, message=f"target topic {topic}")
    time.sleep(3)
    after = produce_ids(peer.bootstrap, topic, "new", 40, 2)
    copied = wait_for_values(broker.bootstrap, topic, set(after))
    assert not set(before) & set(values_of(copied)), "records from before the task were replicated"
    assert len(copied) == 40


def read_topics(bootstrap: str) -> set[str]:
    from confluent_kafka.admin import AdminClient

    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics)


# How long both clusters get new records while a two-way task runs.
TWO_WAY_SECONDS = 120


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_way_with_provenance_is_loop_free(repl_server, broker, peer):
    """Both clusters get records for two minutes while a two-way task with
    the provenance header copies them; afterwards every record exists exactly
    once on each side."""
    topic = f"both-{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap, topic, 3)
    create_topic(peer.bootstrap, topic, 3)
    start_task(
        repl_server,
        replicator_task(
            topic,
            bootstrap_servers=peer.bootstrap,
            direction="two-way",
            provenance_header_enabled=True,
            current_cluster_name="here",
            cluster_name="there",
        ),
    )
    here, there = [], []
    deadline = time.monotonic() + TWO_WAY_SECONDS
    round_index = 0
    while time.monotonic() < deadline:
        here += produce_ids(broker.bootstrap, topic, f"here{round_index}", 100, 3)
        there += produce_ids(peer.bootstrap, topic, f"there{round_index}", 100, 3)
        round_index += 1
        time.sleep(0.5)
    print(f"{len(here)} records produced here and {len(there)} there in {TWO_WAY_SECONDS} s")
    expected = set(here) | set(there)
    for bootstrap in (broker.bootstrap, peer.bootstrap):
        wait_for_values(bootstrap, topic, expected, timeout=300)
    # Let any loop show itself before counting.
    time.sleep(8)
    for name, bootstrap in (("local", broker.bootstrap), ("peer", peer.bootstrap)):
        counts = values_of(read_topic(bootstrap, topic))
        duplicated = [value for value, count in counts.items() if count > 1]
        assert not duplicated, f"{len(duplicated)} values more than once on the {name} cluster: {duplicated[:3]}"
        assert set(counts) == expected, f"{name}: {len(expected - set(counts))} missing, {len(set(counts) - expected)} unexpected"
    copies = [r for r in read_topic(peer.bootstrap, topic) if r.value in set(here)]
    assert all(r.header(PROVENANCE) == b"here" for r in copies)


def test_deleting_a_task_removes_its_consumer_groups(repl_server, broker, peer):
    topic = create_topic(peer.bootstrap, f"groups-{uuid.uuid4().hex[:6]}", 2)
    sent = produce_ids(peer.bootstrap, topic, "g", 200, 2)
    task = start_task(repl_server, replicator_task(topic, bootstrap_servers=peer.bootstrap))
    wait_for_values(broker.bootstrap, topic, set(sent))
    # The progress group lives on the source and is named after the task,
    # its generation, the direction and the target's cluster id.
    cluster_id = re.sub(r"[^A-Za-z0-9_-]", "_", broker.cluster_id)
    group = f"weir-{task['id']}-g0-pull-{cluster_id}"

    def progress() -> dict[int, int]:
        return group_offsets(peer.bootstrap, group, topic, 2)

    wait_until(lambda: sum(progress().values()) == len(sent), timeout=30, message="the task's progress on the source")
    repl_server.api.delete_task(repl_server.instance_ids[0], task["id"])
    wait_until(lambda: not progress(), timeout=180, message=lambda: f"removal of group {group} (offsets {progress()})")


def test_node_kill_loses_nothing(repl_server, broker, peer):
    topic = create_topic(peer.bootstrap, f"kill-{uuid.uuid4().hex[:6]}", 4)
    start_task(repl_server, replicator_task(topic, bootstrap_servers=peer.bootstrap, task_num=2))
    sent = produce_ids(peer.bootstrap, topic, "a", 2000, 4)
    wait_until(lambda: len(read_topic(broker.bootstrap, topic)) > 200, timeout=60, message="replication under way")
    pids = repl_server.node_pids()
    assert pids, "no node process"
    os.kill(pids[0], signal.SIGKILL)
    sent += produce_ids(peer.bootstrap, topic, "b", 2000, 4)
    copied = wait_for_values(broker.bootstrap, topic, set(sent), timeout=180)
    counts = values_of(copied)
    duplicates = sum(count - 1 for count in counts.values())
    print(f"{len(sent)} records sent, {len(copied)} copies, {duplicates} duplicates after kill -9 of a node")
    assert set(counts) == set(sent)
    assert duplicates <= len(sent)


@pytest.mark.parametrize(
    "source, code, fragment",
    [
        ({"bootstrap_servers": "127.0.0.1:1", "rename_topic_enabled": True, "topics_mapping": "a:b",
          "current_cluster_name": "a", "cluster_name": "b"}, "DMS.00400062", "exclude each other"),
        ({"bootstrap_servers": "127.0.0.1:1", "direction": "two-way"}, "DMS.00400062", "loop"),
        ({"bootstrap_servers": "127.0.0.1:1", "instance_id": "00000000-0000-0000-0000-000000000000"}, "DMS.00400062", "not both"),
        ({}, "DMS.00400062", "name the peer"),
        ({"bootstrap_servers": "127.0.0.1:1", "security_protocol": "SASL_PLAINTEXT",
          "sasl_mechanism": "SCRAM-SHA-512", "user_name": "u"}, "DMS.00400062", "password"),
        ({"bootstrap_servers": "127.0.0.1:1", "direction": "sideways"}, "DMS.00400062", "direction"),
        ({"bootstrap_servers": "nohost", "direction": "pull"}, "DMS.00400062", "host:port"),
        ({"bootstrap_servers": "127.0.0.1:1", "compression_type": "brotli"}, "DMS.00400062", "compression_type"),
        ({"bootstrap_servers": ",".join(f"127.0.0.1:{port}" for port in range(1, 100))}, "DMS.00400062", "at most 32"),
        ({"bootstrap_servers": "127.0.0.1:1", "topics_mapping": "a:c,b:c"}, "DMS.00400062", "own target"),
    ],
    ids=["rename-and-mapping", "two-way-loop", "peer-twice", "no-peer", "sasl-password", "direction", "bootstrap", "compression", "bootstrap-list", "merging-mapping"],
)
def test_bad_source_task_rejected(repl_server, source, code, fragment):
    response = repl_server.api.create_task(repl_server.instance_ids[0], replicator_task("t1", **source), expect=None)
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == code
    assert fragment in response.json()["error_msg"]


def test_task_copying_the_same_records_twice_rejected(repl_server):
    api = repl_server.api
    instance_id = repl_server.instance_ids[0]
    topic = f"dup-{uuid.uuid4().hex[:6]}"
    peer = "127.0.0.1:1"

    def create(topics: str, expect=200, **source):
        body = replicator_task(topics, **{"bootstrap_servers": peer, **source})
        body["start_later"] = True
        return api.create_task(instance_id, body, expect=expect)

    first = create(f"{topic},{topic}-other", current_cluster_name="a", cluster_name="b").json()
    # The same peer spelled differently is the same cluster.
    response = create(topic, expect=None, bootstrap_servers=f" {peer} ")
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "DMS.00400062"
    assert first["task_name"] in response.json()["error_msg"]
    assert "copied twice" in response.json()["error_msg"]
    # A mapping onto a topic the first task writes overlaps too.
    response = create(f"{topic}-third", expect=None, topics_mapping=f"{topic}-third:{topic}")
    assert response.status_code == 400, response.text

    # Renamed copies, the other direction and another topic are separate records.
    others = [
        create(topic, rename_topic_enabled=True, current_cluster_name="a", cluster_name="b").json(),
        create(topic, direction="push").json(),
        create(f"{topic}-new").json(),
    ]
    for task in [first, *others]:
        api.delete_task(instance_id, task["id"])


def test_replication_factor_above_peer_brokers_rejected(repl_server, peer):
    api = repl_server.api
    peer_id = api.add_instance(task_name("peer"), peer.bootstrap, broker_num=1)
    response = api.create_task(
        repl_server.instance_ids[0], replicator_task("t1", instance_id=peer_id, replication_factor=3), expect=None
    )
    assert response.status_code == 400, response.text
    assert "brokers" in response.json()["error_msg"]


def group_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in committed if tp.offset >= 0}
    finally:
        consumer.close()


def consume_as_group(bootstrap: str, group: str, topic: str, partitions: int, count: int | None = None) -> list[bytes]:
    """Read a topic as `group` from its committed offsets, committing as it
    goes, until `count` records arrived or the topic is drained."""
    from confluent_kafka import Consumer, TopicPartition

    committed = group_offsets(bootstrap, group, topic, partitions)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    values = []
    positions: dict[int, int] = {}
    try:
        consumer.assign([TopicPartition(topic, p, committed.get(p, 0)) for p in range(partitions)])
        idle_since = time.monotonic()
        while count is None or len(values) < count:
            messages = consumer.consume(1000, timeout=1)
            if not messages:
                if time.monotonic() - idle_since > 5:
                    break
                continue
            idle_since = time.monotonic()
            for message in messages:
                if count is not None and len(values) >= count:
                    break
                if not message.error():
                    values.append(message.value())
                    positions[message.partition()] = message.offset() + 1
        if positions:
            consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in positions.items()], asynchronous=False)
    finally:
        consumer.close()
    return values


def test_offset_sync_for_groups_at_head_and_behind(repl_server, broker, peer):
    topic = create_topic(peer.bootstrap, f"sync-{uuid.uuid4().hex[:6]}", 2)
    sent = produce_ids(peer.bootstrap, topic, "o", 1000, 2)
    at_head = f"app-head-{uuid.uuid4().hex[:6]}"
    behind = f"app-behind-{uuid.uuid4().hex[:6]}"
    assert len(consume_as_group(peer.bootstrap, at_head, topic, 2)) == 1000
    read_behind = consume_as_group(peer.bootstrap, behind, topic, 2, count=100)
    assert len(read_behind) == 100
    source_behind = group_offsets(peer.bootstrap, behind, topic, 2)

    start_task(repl_server, replicator_task(topic, bootstrap_servers=peer.bootstrap, sync_consumer_offsets_enabled=True))
    wait_for_values(broker.bootstrap, topic, set(sent))

    def translated() -> bool:
        head = group_offsets(broker.bootstrap, at_head, topic, 2)
        late = group_offsets(broker.bootstrap, behind, topic, 2)
        # Until replication catches up, a translation may stop at the target's
        # high watermark, behind the source offset, but never ahead of it.
        for partition, offset in late.items():
            assert offset <= source_behind.get(partition, 0), f"translated offset {offset} of partition {partition} is ahead of the source offset {source_behind}"
        # The target topic holds only copies, in source order, so a faithful
        # translation equals the source offset.
        return sum(head.values()) == 1000 and late == source_behind

    wait_until(translated, timeout=240, message="translated offsets of both groups on the target equal to the source offsets")

    # Consumers that move to the target skip nothing and read nothing twice.
    assert consume_as_group(broker.bootstrap, at_head, topic, 2) == []
    rest = consume_as_group(broker.bootstrap, behind, topic, 2)
    assert sorted(rest + read_behind) == sorted(sent)
    copied = read_topic(broker.bootstrap, topic)
    assert all(r.header("weir-source-offset") == str(r.offset).encode() for r in copied)
