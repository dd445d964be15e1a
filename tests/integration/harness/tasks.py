"""Request bodies of OBS_SINK tasks and readers of the objects they write."""

from __future__ import annotations

import uuid
from typing import Any

from .objects import DumpFormat, LocalBucket, ObjectReader, S3Bucket
from .s3 import ACCESS_KEY, REGION, SECRET_KEY


def task_name(prefix: str = "task") -> str:
    """A unique task name of the allowed characters [A-Za-z0-9_-]."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def sink_config(bucket: str, obs_path: str, s3_endpoint: str | None = None, **fields: Any) -> dict[str, Any]:
    """sink_task of an OBS_SINK task; s3_endpoint None means the local backend.

    Defaults: earliest, TEXT, deliver_time_interval 30, partition_format
    yyyy/MM/dd, newline delimiter, no keys.
    """
    config: dict[str, Any] = {
        "consumer_strategy": "earliest",
        "destination_file_type": "TEXT",
        "deliver_time_interval": 30,
        "access_key": ACCESS_KEY,
        "secret_key": SECRET_KEY,
        "obs_bucket_name": bucket,
        "obs_path": obs_path,
        "partition_format": "yyyy/MM/dd",
        "record_delimiter": "\n",
        "store_keys": False,
    }
    if s3_endpoint is not None:
        config.update({"obs_endpoint": s3_endpoint, "obs_region": REGION, "obs_path_style": True})
    config.update(fields)
    return config


def obs_task(topics: str, sink: dict[str, Any], name: str | None = None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task_name": name or task_name(),
        "topics": topics,
        "source_type": "NONE",
        "sink_type": "OBS_SINK",
        "sink_task": sink,
    }
    body.update(fields)
    return body


def dump_format(sink: dict[str, Any]) -> DumpFormat:
    return DumpFormat(
        store_keys=bool(sink.get("store_keys", False)),
        record_delimiter=sink.get("record_delimiter", "\n"),
        kv_delimiter=sink.get("kv_delimiter", ":"),
    )


def local_reader(data_dir, bucket: str, prefix: str = "") -> ObjectReader:
    return ObjectReader(LocalBucket(data_dir, bucket), prefix)


def s3_reader(client, bucket: str, prefix: str = "") -> ObjectReader:
    return ObjectReader(S3Bucket(client, bucket), prefix)
