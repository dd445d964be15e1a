"""Section "replication": KAFKA_REPLICATOR_SOURCE throughput.

Weir does not run replicator tasks yet: CreateConnectorTask rejects them with
DMS.00400129. The section checks that this is still so and reports the
section as not available. Once the server accepts the task, the section
reports the benchmark as missing instead, so the page never shows the old
text as current.
"""

from __future__ import annotations

from harness.tasks import task_name

from .context import Context
from .services import UNCAPPED_SPECIFICATION


def replicator_body(topic: str, peer_bootstrap: str) -> dict:
    return {
        "task_name": task_name("bench-replicator"),
        "topics": topic,
        "source_type": "KAFKA_REPLICATOR_SOURCE",
        "sink_type": "NONE",
        "source_task": {
            "current_cluster_name": "A",
            "cluster_name": "B",
            "user_name": "",
            "password": "",
            "sasl_mechanism": "PLAIN",
            "instance_id": "",
            "bootstrap_servers": peer_bootstrap,
            "security_protocol": "PLAINTEXT",
            "direction": "pull",
            "sync_consumer_offsets_enabled": False,
            "replication_factor": 1,
            "task_num": 2,
            "rename_topic_enabled": False,
            "provenance_header_enabled": False,
            "consumer_strategy": "earliest",
            "compression_type": "none",
            "topics_mapping": "",
        },
    }


def run_replication(ctx: Context) -> dict:
    connector = ctx.connector(2, UNCAPPED_SPECIFICATION, "bench.mem256")
    topic = ctx.kafka.unique_topic("replication-probe")
    ctx.kafka.create_topic(topic, 1)
    response = ctx.weir.api.create_task(connector.instance_id, replicator_body(topic, ctx.kafka.bootstrap), expect=None)
    try:
        error_code = response.json().get("error_code")
    except ValueError:
        error_code = None
    if response.status_code == 400 and error_code == "DMS.00400129":
        status = "not available"
        reason = "KAFKA_REPLICATOR_SOURCE tasks are not implemented: CreateConnectorTask rejects them with DMS.00400129."
    else:
        status = "missing"
        reason = (
            f"CreateConnectorTask now answers HTTP {response.status_code} ({error_code}) to a replicator task; "
            "add the replication benchmark to bench/weirbench/replication.py."
        )
        if response.status_code == 200:
            ctx.weir.api.delete_task(connector.instance_id, response.json()["id"])
    ctx.log(f"replication: {status}")
    # NOTE: a run would read a backlog from one tansu broker and write it to a
    # second one started on another port, as the dump section does with
    # ctx.backlog and rdkafka_performance -C as the baseline.
    return {"status": status, "reason": reason, "rows": [], "targets": []}
