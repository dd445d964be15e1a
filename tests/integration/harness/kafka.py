"""The Kafka broker of the tests (tansu 0.6.0 on loopback, or an external one)
and helpers to create topics, produce with delivery reports and read back.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterable, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from .objects import ProducedRecord
from .procs import ManagedProcess, free_port, wait_until

# (key, value, timestamp in epoch ms or None)
RecordTuple = tuple[bytes | None, bytes | None, int | None]
Produced = dict[int, list[ProducedRecord]]

# Environment variables tansu reads as defaults for its flags (tansu-cli
# 0.6.0, src/cli/broker.rs); cleared so that the shell cannot change them.
TANSU_ENV_VARS = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "DATA_LAKE",
)


def merge_produced(target: Produced, extra: Produced) -> Produced:
    """Add the records of `extra` to `target`, keeping each partition sorted."""
    for partition, records in extra.items():
        target.setdefault(partition, []).extend(records)
        target[partition].sort(key=lambda record: record.offset)
    return target


class TansuBroker:
    """`tansu broker` on a free loopback port, as a managed process.

    storage: "memory" (fast, lost at exit, and it loses records of
    multi-record batches: see the broker fixture in conftest.py) or a path
    for `sqlite://PATH`, which survives a restart of the broker.
    """

    def __init__(
        self,
        tansu_bin: Path,
        log_dir: Path,
        storage: str | Path = "memory",
        extra_args: Sequence[str] = (),
        advertised_port: int | None = None,
        client_config: dict | None = None,
        port: int | None = None,
    ):
        """extra_args go to `tansu broker` (such as --authentication);
        advertised_port is the port put in metadata, for a proxy in front;
        client_config is what the readiness check connects with; port reuses
        the port of an earlier broker on the same store."""
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.client_config = client_config or {}
        advertised = advertised_port or self.port
        work_dir = Path(log_dir)
        if storage == "memory":
            storage_url = f"memory://tansu-{self.port}/"
        else:
            # tansu 0.6.0 reads the path of sqlite://PATH relative to its
            # working directory, even with a leading '/'.
            database = Path(storage).resolve()
            work_dir = database.parent
            storage_url = f"sqlite://{database.name}"
        env = {name: value for name, value in os.environ.items() if name not in TANSU_ENV_VARS}
        env.setdefault("RUST_LOG", "warn")
        self.process = ManagedProcess(
            "tansu",
            [
                tansu_bin,
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{self.port}",
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{advertised}",
                "--storage-engine",
                storage_url,
                # Every broker is its own cluster, as replication tests need.
                "--cluster-id",
                f"tansu-{self.port}",
                *extra_args,
            ],
            log_dir / f"tansu-{self.port}.log",
            env=env,
            cwd=work_dir,
        )

    def start(self, timeout: float = 60, ready_bootstrap: str | None = None) -> "TansuBroker":
        self.process.start()
        wait_for_broker(ready_bootstrap or self.bootstrap, timeout, self.process, self.client_config)
        return self

    def restart(self) -> None:
        self.process.stop()
        self.start()

    def stop(self) -> None:
        self.process.stop()


def wait_for_broker(
    bootstrap: str, timeout: float, process: ManagedProcess | None = None, client_config: dict | None = None
) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, **(client_config or {})})

    def ready() -> bool:
        if process is not None and not process.alive():
            raise AssertionError(f"broker exited:\n{process.log_tail()}")
        try:
            admin.list_topics(timeout=2)
            return True
        except KafkaException:
            return False

    wait_until(ready, timeout=timeout, message=f"broker at {bootstrap}")


class Kafka:
    """Client-side helpers for one broker address."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    @property
    def cluster_id(self) -> str:
        """The broker's cluster id from its metadata."""
        return self.admin.list_topics(timeout=10).cluster_id

    @staticmethod
    def unique_topic(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    def create_topic(self, name: str, partitions: int, timeout: float = 30) -> str:
        futures = self.admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1)], operation_timeout=timeout
        )
        futures[name].result(timeout=timeout)
        # Wait until the metadata shows every partition with a leader.
        def visible() -> bool:
            topic = self.admin.list_topics(name, timeout=5).topics.get(name)
            return bool(topic and not topic.error and len(topic.partitions) == partitions)

        wait_until(visible, timeout=timeout, message=f"topic {name} with {partitions} partitions")
        return name

    def producer(self, **overrides) -> Producer:
        config = {
            "bootstrap.servers": self.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "message.timeout.ms": 120_000,
        }
        config.update(overrides)
        return Producer(config)

    def produce(
        self,
        topic: str,
        records: Iterable[RecordTuple],
        partition_of: Callable[[int, RecordTuple], int] | None = None,
        producer: Producer | None = None,
        timeout: float = 300,
    ) -> Produced:
        """Produce records and return what the delivery reports confirmed.

        partition_of(index, record) picks the partition explicitly. None
        leaves it to librdkafka's partitioner (a hash of the key, random for
        null keys). Raises if any record is not delivered.
        """
        own_producer = producer is None
        producer = producer or self.producer()
        produced: Produced = {}
        errors: list[str] = []

        def make_callback(key, value, timestamp):
            def on_delivery(error, message):
                if error is not None:
                    errors.append(f"{error}")
                    return
                produced.setdefault(message.partition(), []).append(
                    ProducedRecord(message.offset(), key, value, message.timestamp()[1] if timestamp is None else timestamp)
                )

            return on_delivery

        count = 0
        for index, record in enumerate(records):
            key, value, timestamp = record
            kwargs = {"key": key, "value": value, "on_delivery": make_callback(key, value, timestamp)}
            if timestamp is not None:
                kwargs["timestamp"] = timestamp
            if partition_of is not None:
                kwargs["partition"] = partition_of(index, record)
            while True:
                try:
                    producer.produce(topic, **kwargs)
                    break
                except BufferError:
                    producer.poll(0.1)
            count += 1
            if count % 1000 == 0:
                producer.poll(0)
        remaining = producer.flush(timeout)
        if own_producer:
            del producer
        if errors:
            raise AssertionError(f"{len(errors)} of {count} records failed delivery to {topic}: {errors[:5]}")
        if remaining:
            raise AssertionError(f"{remaining} of {count} records to {topic} still undelivered after {timeout} s")
        for records_of_partition in produced.values():
            records_of_partition.sort(key=lambda r: r.offset)
        return produced

    def high_watermarks(self, topic: str) -> dict[int, int]:
        consumer = Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"watermarks-{uuid.uuid4().hex}"})
        try:
            metadata = consumer.list_topics(topic, timeout=10).topics[topic]
            return {
                partition: consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
                for partition in sorted(metadata.partitions)
            }
        finally:
            consumer.close()

    def consume_all(self, topic: str, timeout: float = 60) -> Produced:
        """Read every record of topic up to the current high watermarks."""
        ends = self.high_watermarks(topic)
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        consumed: Produced = {partition: [] for partition in ends}
        try:
            consumer.assign([TopicPartition(topic, partition, 0) for partition in ends])
            deadline = time.monotonic() + timeout
            def done() -> bool:
                return all(
                    (consumed[p][-1].offset + 1 if consumed[p] else 0) >= end for p, end in ends.items() if end > 0
                )

            while not done():
                if time.monotonic() > deadline:
                    raise AssertionError(f"reading {topic} timed out after {timeout} s")
                for message in consumer.consume(10_000, timeout=1):
                    if message.error():
                        if message.error().code() == KafkaError._PARTITION_EOF:
                            continue
                        raise KafkaException(message.error())
                    consumed[message.partition()].append(
                        ProducedRecord(message.offset(), message.key(), message.value(), message.timestamp()[1])
                    )
        finally:
            consumer.close()
        return consumed


class SteadyProducer:
    """Produce records at a steady rate in a background thread until stopped.

    make_record(sequence) returns (key, value, timestamp_ms or None); records
    go round-robin over `partitions`. Every delivered record is kept in
    `produced` (filled from delivery reports).
    """

    def __init__(
        self,
        kafka: Kafka,
        topic: str,
        partitions: int,
        make_record: Callable[[int], RecordTuple],
        records_per_second: float,
    ):
        self.kafka = kafka
        self.topic = topic
        self.partitions = partitions
        self.make_record = make_record
        self.interval = 1.0 / records_per_second
        self.produced: Produced = {}
        self.errors: list[str] = []
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"producer-{topic}", daemon=True)

    def start(self) -> "SteadyProducer":
        self._thread.start()
        return self

    def stop(self, timeout: float = 120) -> Produced:
        """Stop producing, wait for every delivery report and return the records."""
        self._stop.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"producer thread for {self.topic} did not stop within {timeout} s")
        if self.errors:
            raise AssertionError(f"{len(self.errors)} records failed delivery: {self.errors[:5]}")
        for records in self.produced.values():
            records.sort(key=lambda r: r.offset)
        return self.produced

    def delivered(self) -> int:
        return sum(len(records) for records in self.produced.values())

    def _run(self) -> None:
        producer = self.kafka.producer(**{"linger.ms": 1})
        start = time.monotonic()
        try:
            while not self._stop.is_set():
                key, value, timestamp = self.make_record(self.sent)

                def on_delivery(error, message, key=key, value=value, timestamp=timestamp):
                    if error is not None:
                        self.errors.append(str(error))
                        return
                    self.produced.setdefault(message.partition(), []).append(
                        ProducedRecord(message.offset(), key, value, timestamp)
                    )

                kwargs = {"key": key, "value": value, "partition": self.sent % self.partitions, "on_delivery": on_delivery}
                if timestamp is not None:
                    kwargs["timestamp"] = timestamp
                producer.produce(self.topic, **kwargs)
                self.sent += 1
                producer.poll(0)
                # Sleep until the scheduled time of the next record.
                delay = start + self.sent * self.interval - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
        finally:
            remaining = producer.flush(120)
            if remaining:
                self.errors.append(f"{remaining} records undelivered at stop")


def produce_sequence(
    kafka: Kafka,
    topic: str,
    records: Sequence[RecordTuple],
    partitions: int,
) -> Produced:
    """Produce records round-robin over partitions (record i to partition i % n)."""
    return kafka.produce(topic, records, partition_of=lambda index, _: index % partitions)
