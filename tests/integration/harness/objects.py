"""Read the objects an OBS_SINK task wrote and check them against what was
produced: every record in exactly one object, once, in offset order.

Object layout (docs/CONTRACT.md): the key is
`{obs_path}/{topic}/{time dir}/{topic}+{partition}+{first offset, 20 digits}.txt`,
the time dir comes from the first record's timestamp in the task time zone,
and the content is `[key kv_delimiter] value record_delimiter` per record.
Metadata: weir-first-offset, weir-last-offset and weir-record-count (S3 user
metadata), or the xattrs user.weir.first_offset, user.weir.last_offset and
user.weir.record_count (local backend, files under DATA_DIR/buckets/BUCKET/).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Protocol
from zoneinfo import ZoneInfo

NAME_PATTERN = re.compile(r"^(?P<topic>.+)\+(?P<partition>\d+)\+(?P<offset>\d{20})\.txt$")
METADATA_FIELDS = ("first_offset", "last_offset", "record_count")

# partition_format tokens and the strftime directives they stand for.
TIME_TOKENS = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M"}
PARTITION_FORMATS = ("yyyy", "yyyy/MM", "yyyy/MM/dd", "yyyy/MM/dd/HH", "yyyy/MM/dd/HH/mm")


@dataclass(frozen=True)
class ProducedRecord:
    """A record as the producer's delivery report confirmed it."""

    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


@dataclass
class DumpedObject:
    key: str
    topic: str
    partition: int
    first_offset: int
    content: bytes
    metadata: dict[str, str]

    @property
    def directory(self) -> str:
        return self.key.rsplit("/", 1)[0] if "/" in self.key else ""


@dataclass(frozen=True)
class DumpFormat:
    """How a task encodes records: the sink_task fields that shape content."""

    store_keys: bool = False
    record_delimiter: str = "\n"
    kv_delimiter: str = ":"

    def delimiter_bytes(self) -> bytes:
        if self.record_delimiter == "NULL":
            return b""
        # Both a real newline and the two characters backslash-n mean newline.
        if self.record_delimiter in ("\n", "\\n"):
            return b"\n"
        return self.record_delimiter.encode()

    def encode(self, record: ProducedRecord) -> bytes:
        value = record.value or b""
        if self.store_keys:
            return (record.key or b"") + self.kv_delimiter.encode() + value + self.delimiter_bytes()
        return value + self.delimiter_bytes()


def time_directory(timestamp_ms: int, partition_format: str, tz_name: str = "UTC") -> str:
    """Return the time directory of partition_format for a record timestamp."""
    moment = datetime.fromtimestamp(timestamp_ms / 1000, tz=timezone.utc).astimezone(ZoneInfo(tz_name))
    pieces = []
    for token in partition_format.split("/"):
        if token not in TIME_TOKENS:
            raise ValueError(f"unknown partition_format token {token!r} in {partition_format!r}")
        pieces.append(moment.strftime(TIME_TOKENS[token]))
    return "/".join(pieces)


def join_key(*pieces: str) -> str:
    """Join key pieces with '/', dropping empty pieces and doubled separators."""
    parts = []
    for piece in pieces:
        parts.extend(part for part in piece.split("/") if part)
    return "/".join(parts)


def object_name(topic: str, partition: int, first_offset: int) -> str:
    return f"{topic}+{partition}+{first_offset:020d}.txt"


# ---- object stores ----------------------------------------------------------


class ObjectStore(Protocol):
    def list(self, prefix: str) -> list[tuple[str, str]]:
        """Return (key, version) pairs; version changes when the object does."""

    def read(self, key: str) -> tuple[bytes, dict[str, str]]:
        """Return content and normalized metadata (first_offset, ...)."""


class LocalBucket:
    """Bucket B of the local filesystem backend: the directory DATA_DIR/buckets/B/."""

    def __init__(self, data_dir: Path, bucket: str):
        self.root = Path(data_dir) / "buckets" / bucket

    def list(self, prefix: str = "") -> list[tuple[str, str]]:
        found = []
        if not self.root.is_dir():
            return found
        for directory, _, files in os.walk(self.root):
            for name in files:
                path = Path(directory) / name
                key = path.relative_to(self.root).as_posix()
                if not key.startswith(prefix):
                    continue
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue  # renamed or removed while listing
                found.append((key, f"{stat.st_size}:{stat.st_mtime_ns}"))
        return sorted(found)

    def read(self, key: str) -> tuple[bytes, dict[str, str]]:
        path = self.root / key
        content = path.read_bytes()
        metadata = {}
        for name in METADATA_FIELDS:
            try:
                metadata[name] = os.getxattr(path, f"user.weir.{name}").decode()
            except OSError:
                pass
        return content, metadata


class S3Bucket:
    """A bucket of an S3-protocol server, read with boto3."""

    def __init__(self, client, bucket: str):
        self.client = client
        self.bucket = bucket

    def list(self, prefix: str = "") -> list[tuple[str, str]]:
        found = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found.append((item["Key"], f"{item['Size']}:{item['ETag']}"))
        return sorted(found)

    def read(self, key: str) -> tuple[bytes, dict[str, str]]:
        response = self.client.get_object(Bucket=self.bucket, Key=key)
        content = response["Body"].read()
        metadata = {}
        for name, value in response.get("Metadata", {}).items():
            # boto3 strips x-amz-meta- and lowercases: weir-first-offset.
            if name.startswith("weir-"):
                metadata[name[len("weir-"):].replace("-", "_")] = value
        return content, metadata


class ObjectReader:
    """Read the objects under a prefix, caching those that did not change."""

    def __init__(self, store: ObjectStore, prefix: str = ""):
        self.store = store
        self.prefix = prefix
        self._cache: dict[str, tuple[str, DumpedObject]] = {}

    def read_all(self) -> tuple[list[DumpedObject], list[str]]:
        """Return the parsed objects and the keys whose names do not parse."""
        objects, stray = [], []
        listed = self.store.list(self.prefix)
        seen = set()
        for key, version in listed:
            seen.add(key)
            match = NAME_PATTERN.match(key.rsplit("/", 1)[-1])
            if not match:
                stray.append(key)
                continue
            cached = self._cache.get(key)
            if cached and cached[0] == version:
                objects.append(cached[1])
                continue
            try:
                content, metadata = self.store.read(key)
            except FileNotFoundError:
                continue
            dumped = DumpedObject(
                key=key,
                topic=match["topic"],
                partition=int(match["partition"]),
                first_offset=int(match["offset"]),
                content=content,
                metadata=metadata,
            )
            self._cache[key] = (version, dumped)
            objects.append(dumped)
        for key in list(self._cache):
            if key not in seen:
                del self._cache[key]
        return objects, stray

    def total_bytes(self) -> int:
        """Return the summed content size of the objects, without the cache."""
        total = 0
        for key, version in self.store.list(self.prefix):
            if NAME_PATTERN.match(key.rsplit("/", 1)[-1]):
                total += int(version.split(":", 1)[0])
        return total


# ---- checker ----------------------------------------------------------------


@dataclass
class CheckResult:
    problems: list[str] = field(default_factory=list)
    # partition -> number of records found in objects, in order from the start
    covered: dict[int, int] = field(default_factory=dict)
    expected: dict[int, int] = field(default_factory=dict)
    object_count: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self, limit: int = 25) -> str:
        lines = [
            f"{self.object_count} objects, {sum(self.covered.values())} of "
            f"{sum(self.expected.values())} records covered; problems:"
        ]
        lines += [f"  - {problem}" for problem in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more")
        return "\n".join(lines)


def _snippet(data: bytes, limit: int = 80) -> str:
    return repr(data[:limit]) + ("..." if len(data) > limit else "")


def _match_records(
    content: bytes, records: list[ProducedRecord], start: int, fmt: DumpFormat, count: int | None
) -> tuple[int, str | None]:
    """Match content against records[start:]; return (records matched, problem).

    With `count` (the object's record_count metadata), exactly that many
    records must make up the content. Without it, records are matched
    greedily, which is unambiguous unless a record encodes to no bytes.
    """
    position = 0
    index = start
    while position < len(content) or (count is not None and index - start < count):
        if count is not None and index - start == count:
            return index - start, (
                f"holds {count} records per its metadata, but {len(content) - position} "
                f"bytes remain after them: {_snippet(content[position:])}"
            )
        if index >= len(records):
            return index - start, (
                f"has {len(content) - position} bytes after the last produced record "
                f"(offset {records[-1].offset}): {_snippet(content[position:])}"
            )
        expected = fmt.encode(records[index])
        if not content.startswith(expected, position):
            return index - start, (
                f"differs from the produced record at offset {records[index].offset} "
                f"(byte {position}): expected {_snippet(expected)}, found "
                f"{_snippet(content[position:position + max(len(expected), 16)])}"
            )
        if not expected and count is None:
            return index - start, (
                f"record at offset {records[index].offset} encodes to no bytes and the "
                "object has no record_count metadata, so its records cannot be counted"
            )
        position += len(expected)
        index += 1
    return index - start, None


def _check_metadata(obj: DumpedObject, records: list[ProducedRecord], start: int, matched: int) -> list[str]:
    problems = []
    missing = [name for name in METADATA_FIELDS if name not in obj.metadata]
    if missing:
        problems.append(f"{obj.key}: metadata lacks {', '.join(missing)} (found {obj.metadata})")
    expected = {
        "first_offset": str(obj.first_offset),
        "record_count": str(matched),
    }
    if matched:
        expected["last_offset"] = str(records[start + matched - 1].offset)
    for name, value in expected.items():
        if name in obj.metadata and obj.metadata[name] != value:
            problems.append(f"{obj.key}: metadata {name} is {obj.metadata[name]}, expected {value}")
    return problems


def check_dump(
    objects: Iterable[DumpedObject],
    produced: dict[int, list[ProducedRecord]],
    fmt: DumpFormat,
    topic: str,
    start_offsets: dict[int, int] | None = None,
    complete: bool = True,
    obs_path: str | None = None,
    partition_format: str | None = None,
    tz_name: str = "UTC",
    require_metadata: bool = True,
) -> CheckResult:
    """Check that the objects of `topic` hold each produced record exactly once.

    produced: partition -> records sorted by offset (every record of the
    partition from the first one the task should dump).
    start_offsets: partition -> first offset the task should dump; default
    the first produced offset. Records before it must not be in any object.
    complete: also require that every record from the start is covered.
    obs_path / partition_format: when given, check each object's full key.
    """
    result = CheckResult()
    by_partition: dict[int, list[DumpedObject]] = {}
    for obj in objects:
        if obj.topic != topic:
            continue
        by_partition.setdefault(obj.partition, []).append(obj)
        result.object_count += 1

    for partition in sorted(set(by_partition) - set(produced)):
        keys = [obj.key for obj in by_partition[partition]]
        result.problems.append(f"partition {partition} has objects but no produced records: {keys[:5]}")

    for partition, records in sorted(produced.items()):
        _check_partition(
            result,
            partition,
            records,
            sorted(by_partition.get(partition, []), key=lambda obj: (obj.first_offset, obj.key)),
            fmt,
            topic,
            (start_offsets or {}).get(partition),
            complete,
            obs_path,
            partition_format,
            tz_name,
            require_metadata,
        )
    return result


def _check_partition(
    result: CheckResult,
    partition: int,
    records: list[ProducedRecord],
    objects: list[DumpedObject],
    fmt: DumpFormat,
    topic: str,
    start_offset: int | None,
    complete: bool,
    obs_path: str | None,
    partition_format: str | None,
    tz_name: str,
    require_metadata: bool,
) -> None:
    position_of = {record.offset: index for index, record in enumerate(records)}
    if start_offset is None:
        next_index = 0
    else:
        next_index = next((i for i, record in enumerate(records) if record.offset >= start_offset), len(records))
    start_index = next_index
    result.expected[partition] = len(records) - start_index
    result.covered[partition] = 0
    previous_key = None

    for obj in objects:
        label = f"partition {partition}: {obj.key}"
        index = position_of.get(obj.first_offset)
        if index is None:
            result.problems.append(f"{label} starts at offset {obj.first_offset}, which was never produced")
            continue
        if index < start_index:
            result.problems.append(
                f"{label} holds offset {obj.first_offset}, before the start offset "
                f"{records[start_index].offset if start_index < len(records) else start_offset}"
            )
            continue
        if index > next_index:
            result.problems.append(
                f"{label}: gap, offsets {records[next_index].offset}..{records[index - 1].offset} "
                f"({index - next_index} records) are in no object"
            )
        elif index < next_index:
            result.problems.append(
                f"{label}: overlap, starts at offset {obj.first_offset} but offsets up to "
                f"{records[next_index - 1].offset} are already in {previous_key}"
            )
        count = obj.metadata.get("record_count")
        matched, problem = _match_records(
            obj.content, records, index, fmt, int(count) if count is not None and count.isdigit() else None
        )
        if problem:
            result.problems.append(f"{label}: content {problem}")
        if matched == 0 and not problem:
            result.problems.append(f"{label} is empty")
        if require_metadata:
            result.problems.extend(_check_metadata(obj, records, index, matched))
        if partition_format is not None and matched:
            expected_key = join_key(
                obs_path or "",
                topic,
                time_directory(records[index].timestamp_ms, partition_format, tz_name),
                object_name(topic, partition, obj.first_offset),
            )
            if obj.key != expected_key:
                result.problems.append(f"{label}: expected key {expected_key}")
        if index >= next_index:
            result.covered[partition] += matched
        next_index = max(next_index, index + matched)
        previous_key = obj.key

    if complete and next_index < len(records):
        result.problems.append(
            f"partition {partition}: offsets {records[next_index].offset}..{records[-1].offset} "
            f"({len(records) - next_index} records) are in no object"
        )


def wait_for_dump(
    reader: ObjectReader,
    produced: dict[int, list[ProducedRecord]],
    fmt: DumpFormat,
    topic: str,
    timeout: float,
    interval: float = 2.0,
    **check_options,
) -> CheckResult:
    """Poll the objects until check_dump passes; raise with its problems on timeout.

    A problem that waiting cannot fix (a duplicate or an overlap, wrong
    content) that stays the same for 20 s fails the wait early.
    """
    deadline = time.monotonic() + timeout
    stable_since: dict[str, float] = {}
    while True:
        objects, stray = reader.read_all()
        result = check_dump(objects, produced, fmt, topic, **check_options)
        if result.ok:
            return result
        now = time.monotonic()
        lasting = {p for p in result.problems if "in no object" not in p}
        stable_since = {p: stable_since.get(p, now) for p in lasting}
        persistent = [p for p, since in stable_since.items() if now - since >= 20]
        if persistent or now >= deadline:
            reason = "persistent problems" if persistent else f"timed out after {timeout:.0f} s"
            raise AssertionError(f"dump of {topic} incorrect ({reason}): {result.summary()}\nstray keys: {stray[:10]}")
        time.sleep(interval)
