"""Task lifecycle with data: WAITING until started on the kafka/ restart
path, PAUSED writes nothing, resume loses nothing, modify while paused,
delete."""

from __future__ import annotations

import time

import pytest

from harness.checks import assert_error, assert_no_content, assert_ok
from harness.kafka import merge_produced
from harness.objects import wait_for_dump
from harness.tasks import dump_format, local_reader, obs_task, sink_config

PARTITIONS = 3
DELIVER_SECONDS = 30
# A quiet period must outlast one deliver interval plus the time nodes need
# to pick up a state change, so that an object written by mistake shows up.
QUIET_SECONDS = DELIVER_SECONDS + 15


def produce_batch(broker, topic: str, label: str, count: int):
    records = [(b"key-%d" % (i % 4), b"%s-%d" % (label.encode(), i), None) for i in range(count)]
    return broker.produce(topic, records, partition_of=lambda index, _: index % PARTITIONS)


def assert_no_new_objects(reader, seconds: float) -> None:
    before = {key for key, _ in reader.store.list(reader.prefix)}
    time.sleep(seconds)
    after = {key for key, _ in reader.store.list(reader.prefix)}
    assert after == before, f"objects written while they should not be: {sorted(after - before)}"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_task_lifecycle(weir_server, broker):
    server = weir_server()
    api = server.api
    instance_id = server.instance_ids[0]
    api.enable_connector(instance_id)
    topic = broker.unique_topic("lifecycle")
    broker.create_topic(topic, PARTITIONS)
    sink = sink_config("life", "cycle", flush_size=20, deliver_time_interval=DELIVER_SECONDS)
    reader = local_reader(server.data_dir, "life", "cycle/")
    fmt = dump_format(sink)

    # Created with start_later: WAITING, and it writes nothing.
    entity = api.create_task(instance_id, obs_task(topic, sink, start_later=True)).json()
    task_id = entity["id"]
    api.wait_task_status(instance_id, task_id, "WAITING")
    produced = produce_batch(broker, topic, "waiting", 90)
    assert_no_new_objects(reader, QUIET_SECONDS)
    assert api.show_task(instance_id, task_id)["status"] == "WAITING"

    # Started on the kafka/ path, as terraform's "start" action does.
    assert_no_content(api.task_action(instance_id, task_id, "restart_kafka", expect=None))
    api.wait_task_status(instance_id, task_id, "RUNNING")
    wait_for_dump(reader, produced, fmt, topic, timeout=300)

    # Paused: records produced now are not written.
    assert_no_content(api.task_action(instance_id, task_id, "pause", expect=None))
    api.wait_task_status(instance_id, task_id, "PAUSED")
    merge_produced(produced, produce_batch(broker, topic, "paused", 90))
    assert_no_new_objects(reader, QUIET_SECONDS)
    assert api.show_task(instance_id, task_id)["status"] == "PAUSED"

    # ModifyConnectorTask on the paused task returns the entity and keeps it paused.
    shown = api.show_task(instance_id, task_id)
    modified = assert_ok(api.call("PUT", api.task_path(instance_id, task_id), body=shown, expect=None))
    assert modified["id"] == task_id
    assert modified["task_name"] == entity["task_name"]
    assert api.show_task(instance_id, task_id)["status"] == "PAUSED"

    # Resumed: everything produced while paused arrives, nothing twice.
    assert_no_content(api.task_action(instance_id, task_id, "resume", expect=None))
    api.wait_task_status(instance_id, task_id, "RUNNING")
    merge_produced(produced, produce_batch(broker, topic, "resumed", 30))
    result = wait_for_dump(reader, produced, fmt, topic, timeout=300)
    assert sum(result.covered.values()) == 210

    # Deleted: gone from show and list, and it writes nothing more.
    assert_no_content(api.delete_task(instance_id, task_id, expect=None))
    assert_error(api.call("GET", api.task_path(instance_id, task_id), expect=None), 404, "DMS.00404026")
    assert task_id not in [task["id"] for task in api.list_tasks(instance_id, [("limit", 50)])["tasks"]]
    produce_batch(broker, topic, "deleted", 30)
    assert_no_new_objects(reader, QUIET_SECONDS)

