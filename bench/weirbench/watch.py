"""Polling of the objects a task writes: which chunks are visible, their
last offsets, and when each first appeared.

Object names end in TOPIC+PARTITION+FIRST_OFFSET.txt. The last offset of a
chunk is in its metadata: the `user.weir.last_offset` extended attribute of
a local file, `x-amz-meta-weir-last-offset` on S3.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import unquote

NAME = re.compile(r"^(?P<topic>.+)\+(?P<partition>\d+)\+(?P<offset>\d{20})\.txt$")


@dataclass
class Chunk:
    key: str
    partition: int
    first_offset: int
    size: int
    seen_at: float  # time.time() of the poll that first listed it
    last_offset: int | None = None


class ObjectWatcher:
    """Lists a destination and keeps every chunk seen, with its first sighting."""

    def __init__(self, list_objects: Callable[[], list[tuple[str, int]]], last_offset_of: Callable[[str], int]):
        self._list = list_objects
        self._last_offset_of = last_offset_of
        self.chunks: dict[str, Chunk] = {}

    def poll(self) -> list[Chunk]:
        """List once; return the chunks that are new since the last poll."""
        now = time.time()
        new = []
        for key, size in self._list():
            if key in self.chunks:
                continue
            match = NAME.match(key.rsplit("/", 1)[-1])
            if not match:
                continue
            chunk = Chunk(key, int(match["partition"]), int(match["offset"]), size, now)
            self.chunks[key] = chunk
            new.append(chunk)
        return new

    def last_offset(self, chunk: Chunk) -> int:
        if chunk.last_offset is None:
            chunk.last_offset = self._last_offset_of(chunk.key)
        return chunk.last_offset

    def newest_per_partition(self) -> dict[int, Chunk]:
        newest: dict[int, Chunk] = {}
        for chunk in self.chunks.values():
            if chunk.partition not in newest or chunk.first_offset > newest[chunk.partition].first_offset:
                newest[chunk.partition] = chunk
        return newest

    def complete(self, ends: dict[int, int]) -> bool:
        """Return whether each partition's newest chunk ends at the
        partition's end offset (its high watermark) minus one."""
        newest = self.newest_per_partition()
        for partition, end in ends.items():
            if end == 0:
                continue
            chunk = newest.get(partition)
            if chunk is None or self.last_offset(chunk) < end - 1:
                return False
        return True

    def total_bytes(self) -> int:
        return sum(chunk.size for chunk in self.chunks.values())


def local_watcher(bucket_dir: Path) -> ObjectWatcher:
    bucket_dir = Path(bucket_dir)

    def list_objects() -> list[tuple[str, int]]:
        found = []
        if not bucket_dir.exists():
            return found
        for directory, _, files in os.walk(bucket_dir):
            for name in files:
                path = os.path.join(directory, name)
                try:
                    size = os.stat(path).st_size
                except FileNotFoundError:
                    continue
                found.append((os.path.relpath(path, bucket_dir), size))
        return found

    def last_offset_of(key: str) -> int:
        return int(os.getxattr(bucket_dir / key, "user.weir.last_offset"))

    return ObjectWatcher(list_objects, last_offset_of)


def s3_watcher(client, bucket: str, prefix: str = "") -> ObjectWatcher:
    def list_objects() -> list[tuple[str, int]]:
        found = []
        paginator = client.get_paginator("list_objects_v2")
        # With EncodingType=url set by the caller, botocore leaves the keys
        # alone. Its own decoding uses unquote_plus, which turns the '+' of
        # object names into spaces when the server (s3s-fs 0.14.1) leaves '+'
        # unencoded.
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix, EncodingType="url"):
            found += [(unquote(item["Key"]), item["Size"]) for item in page.get("Contents", [])]
        return found

    def last_offset_of(key: str) -> int:
        head = client.head_object(Bucket=bucket, Key=key)
        return int(head["Metadata"]["weir-last-offset"])

    return ObjectWatcher(list_objects, last_offset_of)
