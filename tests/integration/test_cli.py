"""The weir client subcommands against a running server, with the
WEIR_ENDPOINT, WEIR_PROJECT_ID, WEIR_ACCESS_KEY and WEIR_SECRET_KEY
variables, as the quickstart uses them."""

from __future__ import annotations

import json

from harness.api import Key
from harness.tasks import obs_task, sink_config
from harness.weir import run_cli


def cli_json(weir_bin, server, *args: str) -> dict | list:
    result = run_cli(weir_bin, ["--output", "json", *args], server)
    assert result.returncode == 0, f"weir {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
    return json.loads(result.stdout)


def test_cli_instance_connector_task(weir_bin, module_server, broker, tmp_path):
    project = module_server.key.project_id
    added = cli_json(
        weir_bin, module_server, "instance", "add", "--project", project, "--name", "cli-kafka",
        "--bootstrap-servers", broker.bootstrap,
    )
    instance_id = added["instance_id"]
    shown = module_server.api.show_instance(instance_id)
    assert shown["name"] == "cli-kafka"

    cli_json(weir_bin, module_server, "connector", "create", "--instance", instance_id, "--node-cnt", "2")
    module_server.api.wait_instance_status(instance_id, "RUNNING")
    assert module_server.api.show_instance(instance_id)["connector_node_num"] == 2

    task_file = tmp_path / "task.json"
    body = obs_task("cli-topic", sink_config("cli", "cli"), start_later=True)
    task_file.write_text(json.dumps(body))
    created = cli_json(weir_bin, module_server, "task", "create", "--instance", instance_id, "--file", str(task_file))
    assert created["task_name"] == body["task_name"]

    listed = cli_json(weir_bin, module_server, "task", "list", "--instance", instance_id)
    assert created["id"] in json.dumps(listed)
    jobs = cli_json(weir_bin, module_server, "job", "list", "--instance", instance_id)
    assert "SUCCESS" in json.dumps(jobs)


def test_cli_reports_api_error(weir_bin, module_server):
    result = run_cli(weir_bin, ["instance", "show", "00000000-0000-0000-0000-000000000000"], module_server)
    assert result.returncode != 0
    assert "DMS.00404022" in result.stderr + result.stdout


def test_cli_rejects_wrong_secret(weir_bin, module_server):
    key = module_server.key
    wrong = Key(key.access_key, key.secret_key + "x", key.project_id)
    result = run_cli(weir_bin, ["instance", "list"], module_server, key=wrong)
    assert result.returncode != 0
    assert "APIGW.0301" in result.stderr + result.stdout


def test_cli_validates_replication_peer(weir_bin, module_server, broker, tmp_path):
    """`connector validate` takes the CreateConnectorTask file of a replication
    task: a reachable peer passes, and an unreachable one fails with the
    server's error code."""
    instance_id = module_server.instance_ids[0]
    task = {
        "task_name": "cli-validate",
        "topics": "cli-topic",
        "source_type": "KAFKA_REPLICATOR_SOURCE",
        "sink_type": "NONE",
        "source_task": {
            "bootstrap_servers": broker.bootstrap,
            "security_protocol": "PLAINTEXT",
            "direction": "pull",
        },
    }
    reachable = tmp_path / "reachable.json"
    reachable.write_text(json.dumps(task))
    task["source_task"]["bootstrap_servers"] = "127.0.0.1:9"
    unreachable = tmp_path / "unreachable.json"
    unreachable.write_text(json.dumps(task))

    passed = run_cli(weir_bin, ["connector", "validate", "--instance", instance_id, "--file", str(reachable)], module_server)
    failed = run_cli(weir_bin, ["connector", "validate", "--instance", instance_id, "--file", str(unreachable)], module_server)

    assert passed.returncode == 0, passed.stderr
    assert "reachable" in passed.stdout
    assert failed.returncode != 0
    assert "WEIR.00400101" in failed.stderr + failed.stdout
