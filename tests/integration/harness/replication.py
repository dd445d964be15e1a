"""Reading replicated topics back with headers, and producing records that
carry an id, so that copies can be counted exactly."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from .procs import wait_until


@dataclass(frozen=True)
class Record:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp: int

    def header(self, name: str) -> bytes | None:
        return next((value for key, value in self.headers if key == name), None)


def high_watermarks(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"hw-{uuid.uuid4().hex}"})
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return {}
        return {
            partition: consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
            for partition in sorted(metadata.partitions)
        }
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str, timeout: float = 60) -> list[Record]:
    """Read every record of a topic up to its current high watermarks."""
    ends = high_watermarks(bootstrap, topic)
    if not any(ends.values()):
        return []
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    records: list[Record] = []
    next_offset = {partition: 0 for partition in ends}
    try:
        consumer.assign([TopicPartition(topic, partition, 0) for partition in ends])
        deadline = time.monotonic() + timeout
        while any(next_offset[p] < end for p, end in ends.items()):
            if time.monotonic() > deadline:
                raise AssertionError(f"reading {topic} at {bootstrap} timed out after {timeout} s")
            for message in consumer.consume(10_000, timeout=1):
                if message.error():
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(message.error())
                if message.offset() >= ends[message.partition()]:
                    continue
                next_offset[message.partition()] = message.offset() + 1
                records.append(
                    Record(
                        message.partition(),
                        message.offset(),
                        message.key(),
                        message.value(),
                        tuple(message.headers() or ()),
                        message.timestamp()[1],
                    )
                )
    finally:
        consumer.close()
    return records


def produce_ids(
    bootstrap: str,
    topic: str,
    prefix: str,
    count: int,
    partitions: int,
    headers: list[tuple[str, bytes]] | None = None,
) -> list[bytes]:
    """Produce `count` records whose values are unique ids (`prefix-N`),
    record N to partition N % partitions, with key `kN` and a fixed
    timestamp per record. Returns the values."""
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    errors: list[str] = []
    values = []
    base_timestamp = 1_700_000_000_000
    for index in range(count):
        value = f"{prefix}-{index}".encode()
        values.append(value)
        while True:
            try:
                producer.produce(
                    topic,
                    key=f"k{index}".encode(),
                    value=value,
                    partition=index % partitions,
                    timestamp=base_timestamp + index,
                    headers=headers,
                    on_delivery=lambda error, _message: errors.append(str(error)) if error else None,
                )
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(120)
    assert not errors, errors[:5]
    assert remaining == 0, f"{remaining} records undelivered to {topic}"
    return values


def wait_for_values(bootstrap: str, topic: str, expected: set[bytes], timeout: float = 120) -> list[Record]:
    """Wait until every expected value is in the topic; return all records."""
    seen: list[Record] = []

    def complete() -> bool:
        nonlocal seen
        seen = read_topic(bootstrap, topic)
        values = {record.value for record in seen}
        return expected <= values

    wait_until(
        complete,
        timeout=timeout,
        interval=1.0,
        message=lambda: f"{len(expected - {r.value for r in seen})} of {len(expected)} values missing from {topic} at {bootstrap}",
    )
    return seen
