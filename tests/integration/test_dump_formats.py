"""OBS_SINK content and layout options on small data: every partition_format,
record_delimiter and store_keys setting, tombstones, a time zone, the two
consumer strategies, and the flush of an idle partition.

All format tasks are created together by one module fixture and run side by
side on one connector, so the module waits about one deliver interval in all.
"""

from __future__ import annotations

import time
import uuid

import pytest

from harness.flights import sample_flights
from harness.objects import PARTITION_FORMATS, check_dump, wait_for_dump
from harness.procs import wait_until
from harness.tasks import dump_format, local_reader, obs_task, sink_config

BUCKET = "formats"
PARTITIONS = 3
# 610 records over 3 partitions with flush_size 50: full chunks close on
# size and the last chunk of each partition (3 or 4 records) on the interval.
SAMPLE_SIZE = 610
FLUSH_SIZE = 50
DELIVER_SECONDS = 30
DRAIN_TIMEOUT = 300

CASES = {
    **{f"format-{fmt.replace('/', '-')}": {"partition_format": fmt} for fmt in PARTITION_FORMATS},
    "delimiter-comma": {"record_delimiter": ","},
    "delimiter-semicolon": {"record_delimiter": ";"},
    "delimiter-pipe": {"record_delimiter": "|"},
    "delimiter-backslash-n": {"record_delimiter": "\\n"},
    "delimiter-null": {"record_delimiter": "NULL"},
    "keys-stored": {"store_keys": True},
    "keys-stored-pipe": {"store_keys": True, "record_delimiter": "|"},
    "timezone-new-york": {"partition_format": "yyyy/MM/dd/HH", "timezone": "America/New_York"},
}


@pytest.fixture(scope="module")
def format_setup(module_server, broker):
    """Produce the sample topics, enable a connector and start every case's task."""
    api = module_server.api
    instance_id = module_server.instance_ids[0]
    api.ensure_connector(instance_id)

    flights_topic = broker.unique_topic("sample")
    broker.create_topic(flights_topic, PARTITIONS)
    records = [(f.key, f.value, f.timestamp_ms) for f in sample_flights(SAMPLE_SIZE)]
    flights = broker.produce(flights_topic, records, partition_of=lambda index, _: index % PARTITIONS)

    # Tombstones (null values) and null keys mixed with ordinary records.
    tombstone_topic = broker.unique_topic("tombstones")
    broker.create_topic(tombstone_topic, 1)
    base = 1_700_000_000_000
    mixed = []
    for index in range(120):
        key = None if index % 7 == 0 else f"key-{index % 5}".encode()
        value = None if index % 3 == 0 else f'{{"n":{index}}}'.encode()
        mixed.append((key, value, base + index * 1000))
    tombstones = broker.produce(tombstone_topic, mixed, partition_of=lambda index, _: 0)

    tasks = {}
    for name, fields in CASES.items():
        sink = sink_config(BUCKET, f"cases/{name}", flush_size=FLUSH_SIZE, deliver_time_interval=DELIVER_SECONDS, **fields)
        tasks[name] = (flights_topic, flights, sink)
    sink = sink_config(BUCKET, "cases/tombstones", store_keys=True, flush_size=FLUSH_SIZE)
    tasks["tombstones"] = (tombstone_topic, tombstones, sink)

    for name, (topic, _, sink) in tasks.items():
        api.create_task(instance_id, obs_task(topic, sink, name=f"case-{name}"))
    return tasks


@pytest.mark.slow
@pytest.mark.parametrize("case", [*CASES, "tombstones"])
def test_dump_format(module_server, format_setup, case):
    topic, produced, sink = format_setup[case]
    reader = local_reader(module_server.data_dir, BUCKET, f"{sink['obs_path']}/")
    result = wait_for_dump(
        reader,
        produced,
        dump_format(sink),
        topic,
        timeout=DRAIN_TIMEOUT,
        obs_path=sink["obs_path"],
        partition_format=sink["partition_format"],
        tz_name=sink.get("timezone", "UTC"),
    )
    assert sum(result.covered.values()) == sum(len(records) for records in produced.values())
    # flush_size bounds every object.
    objects, _ = reader.read_all()
    for obj in objects:
        assert int(obj.metadata["record_count"]) <= FLUSH_SIZE, obj.key


@pytest.mark.slow
def test_idle_partition_flush(module_server, broker):
    """A chunk of a few records is written within the deliver interval plus
    slack although no further record arrives."""
    api = module_server.api
    instance_id = module_server.instance_ids[0]
    api.ensure_connector(instance_id)
    topic = broker.unique_topic("idle")
    broker.create_topic(topic, 2)
    sink = sink_config(BUCKET, f"idle/{uuid.uuid4().hex[:6]}", deliver_time_interval=DELIVER_SECONDS)
    entity = api.create_task(instance_id, obs_task(topic, sink)).json()
    api.wait_task_status(instance_id, entity["id"], "RUNNING")

    produced = broker.produce(topic, [(b"k", b"idle-%d" % i, None) for i in range(5)], partition_of=lambda i, _: 0)
    produced_at = time.monotonic()
    reader = local_reader(module_server.data_dir, BUCKET, f"{sink['obs_path']}/")
    # Slack: up to 30 s for the nodes' consumer group to get the partitions
    # assigned, plus polling and upload time.
    slack = 45
    wait_until(lambda: reader.read_all()[0], timeout=DELIVER_SECONDS + slack, message="the idle chunk's object")
    waited = time.monotonic() - produced_at
    result = check_dump(reader.read_all()[0], produced, dump_format(sink), topic)
    assert result.ok, result.summary()
    print(f"idle chunk written {waited:.1f} s after the records were produced")


@pytest.mark.slow
def test_consumer_strategy_latest(module_server, broker):
    """Records produced before a `latest` task starts are not dumped; every
    record from the task's start position on is, through the last one."""
    api = module_server.api
    instance_id = module_server.instance_ids[0]
    api.ensure_connector(instance_id)
    topic = broker.unique_topic("latest")
    broker.create_topic(topic, PARTITIONS)
    broker.produce(topic, [(None, b"before-%d" % i, None) for i in range(30)], partition_of=lambda i, _: i % PARTITIONS)
    ends_before = broker.high_watermarks(topic)

    sink = sink_config(BUCKET, f"latest/{uuid.uuid4().hex[:6]}", consumer_strategy="latest", flush_size=10)
    entity = api.create_task(instance_id, obs_task(topic, sink)).json()
    api.wait_task_status(instance_id, entity["id"], "RUNNING")
    reader = local_reader(module_server.data_dir, BUCKET, f"{sink['obs_path']}/")

    # The moment the task resolves "latest" is not observable, so produce
    # in small batches until every partition has an object, then a final
    # batch that must be dumped completely.
    after: dict[int, list] = {}
    deadline = time.monotonic() + 180
    batch = 0
    while True:
        more = broker.produce(
            topic, [(None, b"after-%d-%d" % (batch, i), None) for i in range(PARTITIONS)], partition_of=lambda i, _: i
        )
        for partition, records in more.items():
            after.setdefault(partition, []).extend(records)
        batch += 1
        objects, _ = reader.read_all()
        if {obj.partition for obj in objects} == set(range(PARTITIONS)):
            break
        assert time.monotonic() < deadline, f"no object for every partition after 180 s: {[o.key for o in objects]}"
        time.sleep(1)
    final = broker.produce(topic, [(None, b"final-%d" % i, None) for i in range(PARTITIONS * 10)], partition_of=lambda i, _: i % PARTITIONS)
    for partition, records in final.items():
        after[partition].extend(records)

    # Objects start at some offset at or after the old end and cover every
    # record from there to the last one.
    objects, _ = reader.read_all()
    starts = {}
    for partition in range(PARTITIONS):
        firsts = [obj.first_offset for obj in objects if obj.partition == partition]
        starts[partition] = min(firsts)
        assert starts[partition] >= ends_before[partition], (
            f"partition {partition}: object at offset {starts[partition]}, before the task started "
            f"(end offset then: {ends_before[partition]})"
        )
    result = wait_for_dump(reader, after, dump_format(sink), topic, timeout=DRAIN_TIMEOUT, start_offsets=starts)
    for partition in range(PARTITIONS):
        assert result.covered[partition] >= len(final[partition])
