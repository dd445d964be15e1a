"""Key management, project isolation, the master key, development mode
without authentication, node tokens, and secrets kept out of responses,
logs and the store file."""

from __future__ import annotations

import json
import secrets
import subprocess
import uuid
from pathlib import Path

import requests

from harness.api import ApiClient, Key
from harness.procs import wait_until
from harness.tasks import obs_task, s3_reader, sink_config, task_name
from harness.weir import new_key, run_cli

LIST_QUERY = [("engine", "kafka")]
MASTER_KEY_A = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE="  # 32 bytes of "A"
MASTER_KEY_B = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI="  # 32 bytes of "B"


def create_key(weir_bin, server, project_id: str, *extra: str) -> Key:
    result = run_cli(weir_bin, ["--project", project_id, "--output", "json", "key", "create", *extra], server)
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["project_id"] == project_id
    return Key(access_key=body["access_key"], secret_key=body["secret_key"], project_id=project_id)


def test_key_create_list_revoke(weir_server, weir_bin):
    server = weir_server()
    project_id = uuid.uuid4().hex
    key = create_key(weir_bin, server, project_id, "--description", "ci tests")
    assert len(key.secret_key) >= 32

    client = ApiClient(server.url, key)
    listed = client.call("GET", "/instances", query=LIST_QUERY).json()
    assert listed["instances"] == []

    result = run_cli(weir_bin, ["--project", project_id, "--output", "json", "key", "list"], server)
    assert result.returncode == 0, result.stderr
    keys = json.loads(result.stdout)["keys"]
    assert [k["access_key"] for k in keys] == [key.access_key]
    assert keys[0]["description"] == "ci tests"
    assert keys[0]["admin"] is False
    assert key.secret_key not in result.stdout
    assert "secret_key" not in result.stdout

    result = run_cli(weir_bin, ["key", "revoke", key.access_key], server)
    assert result.returncode == 0, result.stderr
    rejected = client.call("GET", "/instances", expect=None, query=LIST_QUERY)
    assert rejected.status_code == 401
    assert rejected.json()["error_code"] == "APIGW.0301"


def test_key_create_text_output_warns_once(weir_server, weir_bin):
    server = weir_server()
    result = run_cli(weir_bin, ["--project", uuid.uuid4().hex, "key", "create"], server)
    assert result.returncode == 0, result.stderr
    assert "secret_key:" in result.stdout
    assert "shown only now" in result.stdout


def test_key_management_needs_admin(weir_server, weir_bin):
    server = weir_server()
    user = create_key(weir_bin, server, uuid.uuid4().hex)
    for argv in (["key", "create"], ["key", "list"], ["key", "revoke", server.key.access_key]):
        result = run_cli(weir_bin, ["--project", user.project_id, *argv], server, key=user)
        assert result.returncode != 0, argv
        assert "DMS.00403003" in result.stderr, result.stderr
    # The admin key survives the attempt to revoke it.
    server.api.call("GET", "/instances", query=LIST_QUERY)


def test_config_key_revoke_rejected(weir_server, weir_bin):
    """A key of the configuration file comes back at every start, so revoking
    it through the API is rejected with what to do instead."""
    server = weir_server()
    result = run_cli(weir_bin, ["key", "revoke", server.key.access_key], server)
    assert result.returncode != 0
    assert "configuration file" in result.stderr, result.stderr
    missing = run_cli(weir_bin, ["key", "revoke", "NOSUCHKEY"], server)
    assert missing.returncode != 0
    assert "does not exist" in missing.stderr, missing.stderr


def test_key_create_rejects_bad_project(weir_server):
    server = weir_server()
    for project_id in ("", "../etc", "a" * 65, "p p"):
        response = server.api.request("POST", "/admin/v1/keys", body={"project_id": project_id})
        assert response.status_code == 400, (project_id, response.text)
        assert response.json()["error_code"] in ("DMS.00400002", "DMS.00400062"), response.text


def test_project_header_must_match_key(weir_server):
    """A request whose X-Project-Id names another project sees nothing, as
    if the resources did not exist, even when the path names the key's own."""
    server = weir_server()
    api = server.api
    instance_id = server.instance_ids[0]
    own = api.call("GET", api.instance_path(instance_id))
    assert own.json()["instance_id"] == instance_id

    other = uuid.uuid4().hex
    hidden = api.call("GET", api.instance_path(instance_id), expect=404, headers={"X-Project-Id": other})
    assert hidden.json()["error_code"] == "DMS.00404022"
    listed = api.call("GET", "/instances", headers={"X-Project-Id": other}, query=LIST_QUERY).json()
    assert listed["instances"] == []

    # The path naming another project hides the instance too.
    response = api.request("GET", api.v2(api.instance_path(instance_id), project_id=other))
    assert response.status_code == 404
    assert response.json()["error_code"] == "DMS.00404022"


def test_other_project_key_sees_nothing(weir_server, weir_bin):
    server = weir_server()
    instance_id = server.instance_ids[0]
    stranger = create_key(weir_bin, server, uuid.uuid4().hex)
    client = ApiClient(server.url, stranger)
    for project_id in (stranger.project_id, server.key.project_id):
        response = client.request("GET", client.v2(client.instance_path(instance_id), project_id=project_id))
        assert response.status_code == 404, response.text
        assert response.json()["error_code"] == "DMS.00404022"
        tasks = client.request("GET", client.v2(f"{client.instance_path(instance_id)}/connector/tasks", project_id=project_id))
        assert tasks.status_code == 404, tasks.text


def test_master_key_from_environment(weir_server):
    fresh = weir_server()
    fresh.stop()
    # Start again on an empty store, keyed by the environment variable.
    for path in fresh.data_dir.iterdir():
        if path.is_file():
            path.unlink()
    fresh.extra_env["WEIR_MASTER_KEY"] = MASTER_KEY_A
    fresh.restart()
    assert not (fresh.data_dir / "master.key").exists()
    fresh.api.call("GET", "/instances", query=LIST_QUERY)
    fresh.stop()

    fresh.extra_env["WEIR_MASTER_KEY"] = MASTER_KEY_B
    wrong = subprocess.run(fresh.command(), env=fresh.environment(), capture_output=True, text=True, timeout=60)
    assert wrong.returncode != 0
    assert "does not match" in wrong.stderr, wrong.stderr
    assert "WEIR_MASTER_KEY" in wrong.stderr, wrong.stderr

    del fresh.extra_env["WEIR_MASTER_KEY"]
    missing = subprocess.run(fresh.command(), env=fresh.environment(), capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0
    assert "master.key not found" in missing.stderr, missing.stderr
    assert not (fresh.data_dir / "master.key").exists()

    fresh.extra_env["WEIR_MASTER_KEY"] = "too-short"
    invalid = subprocess.run(fresh.command(), env=fresh.environment(), capture_output=True, text=True, timeout=60)
    assert invalid.returncode != 0
    assert "invalid master key" in invalid.stderr, invalid.stderr

    fresh.extra_env["WEIR_MASTER_KEY"] = MASTER_KEY_A
    fresh.restart()
    fresh.api.call("GET", "/instances", query=LIST_QUERY)


def test_lost_master_key_file_is_reported(weir_server):
    server = weir_server()
    key_file = server.data_dir / "master.key"
    assert key_file.exists()
    assert key_file.stat().st_mode & 0o077 == 0
    server.stop()
    saved = key_file.read_bytes()
    key_file.unlink()
    result = subprocess.run(server.command(), env=server.environment(), capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "not found" in result.stderr, result.stderr
    key_file.write_bytes(saved)
    server.restart()
    server.api.call("GET", "/instances", query=LIST_QUERY)


def test_no_auth_mode_is_explicit(weir_server):
    server = weir_server()
    unsigned = server.api.request("GET", server.api.v2("/instances"), signed=False, query=LIST_QUERY)
    assert unsigned.status_code == 401
    assert unsigned.json()["error_code"] == "APIGW.0301"
    server.stop()

    server.extra_args.append("--no-auth")
    server.restart()
    assert "Authentication is disabled" in server.log_path.read_text()
    listed = server.api.request("GET", server.api.v2("/instances"), signed=False, query=LIST_QUERY)
    assert listed.status_code == 200, listed.text
    assert [i["instance_id"] for i in listed.json()["instances"]] == server.instance_ids
    minted = server.api.request("POST", "/admin/v1/keys", signed=False, body={"project_id": "p1", "admin": True})
    assert minted.status_code == 403, minted.text


def test_node_token_only_reaches_node_endpoints(weir_server):
    server = weir_server()
    api = server.api
    instance_id = server.instance_ids[0]
    api.enable_connector(instance_id)
    token = api.node_token(instance_id)
    bearer = {"Authorization": f"Bearer {token['token']}"}
    response = requests.get(f"{server.url}{api.v2('/instances')}", headers=bearer, timeout=10)
    assert response.status_code == 401
    response = requests.post(f"{server.url}/admin/v1/keys", headers=bearer, json={"project_id": "p"}, timeout=10)
    assert response.status_code == 401

    # A signed API request is no node token.
    node_path = f"/internal/v1/connectors/{token['connector_id']}/nodes"
    signed = api.request("POST", node_path, body={"node_id": "n1", "pid": 1, "host": "h", "version": "0"})
    assert signed.status_code == 401, signed.text


def test_node_token_reaches_only_its_own_nodes(weir_server):
    """The node token of one connector can neither deregister, heartbeat for
    nor take over by registering the nodes of another connector."""
    server = weir_server(instances=2)
    api = server.api
    first, second = server.instance_ids
    api.enable_connector(first)
    api.enable_connector(second)
    token = api.node_token(first)
    victim = api.show_instance(second)["connector_nodes"][0]["node_id"]
    bearer = {"Authorization": f"Bearer {token['token']}"}
    nodes = f"{server.url}/internal/v1/connectors/{token['connector_id']}/nodes"

    deregistered = requests.post(f"{nodes}/{victim}/deregister", headers=bearer, timeout=10)
    report = {"tasks": [], "rss_bytes": 0, "buffered_bytes": 0}
    heartbeat = requests.post(f"{nodes}/{victim}/heartbeat", headers=bearer, json=report, timeout=10)
    registered = requests.post(
        nodes, headers=bearer, json={"node_id": victim, "pid": 1, "host": "h", "version": "0"}, timeout=10
    )

    assert deregistered.status_code == 404, deregistered.text
    assert heartbeat.status_code == 404, heartbeat.text
    assert registered.status_code == 409, registered.text
    assert registered.json()["error_code"] == "WEIR.00409001"
    shown = api.show_instance(second)
    assert victim in [node["node_id"] for node in shown["connector_nodes"]]
    assert shown["connector_live_node_num"] == 2
    assert all(node["node_id"] != victim for node in api.show_instance(first)["connector_nodes"])


def test_secrets_stay_out_of_responses_logs_and_store(weir_server, weir_bin, broker, s3):
    """Run a real dump with unique credentials, then look for every secret in
    the API responses, the server and node logs, and the store files."""
    server = weir_server()
    api = server.api
    user = create_key(weir_bin, server, server.key.project_id)
    sasl_password = "pw-" + secrets.token_hex(12)
    api.add_instance(
        task_name("sasl"),
        "127.0.0.1:1",
        broker_num=1,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        username="weir",
        password=sasl_password,
    )

    instance_id = server.instance_ids[0]
    connector = api.enable_connector(instance_id)
    token = api.node_token(instance_id)["token"]
    topic = broker.unique_topic("secrets")
    broker.create_topic(topic, 1)
    bucket = f"secrets-{uuid.uuid4().hex[:8]}"
    s3.client.create_bucket(Bucket=bucket)
    obs_access_key = "AKOBS" + secrets.token_hex(8).upper()
    obs_secret_key = "skobs" + secrets.token_hex(16)
    sink = sink_config(
        bucket,
        "secrets",
        s3.endpoint,
        access_key=obs_access_key,
        secret_key=obs_secret_key,
        flush_size=10,
    )
    created = api.create_task(instance_id, obs_task(topic, sink)).json()
    api.wait_task_status(instance_id, created["id"], "RUNNING")
    broker.produce(topic, [(None, b"record-%d" % i, None) for i in range(20)], partition_of=lambda i, _: 0)
    reader = s3_reader(s3.client, bucket, "secrets/")
    wait_until(lambda: reader.read_all()[0], timeout=90, message="an object of the dump")

    shown = api.show_task(instance_id, created["id"])
    listed = api.list_tasks(instance_id)
    instances = api.call("GET", "/instances", query=LIST_QUERY).json()
    responses = json.dumps([created, shown, listed, instances, connector])
    secret_values = {
        "API secret key": server.key.secret_key,
        "created API secret key": user.secret_key,
        "OBS access key": obs_access_key,
        "OBS secret key": obs_secret_key,
        "SASL password": sasl_password,
    }
    for name, value in secret_values.items():
        assert value not in responses, f"{name} is in an API response"
    for field in ("access_key", "secret_key", "password"):
        assert f'"{field}"' not in json.dumps([shown, listed]), field

    secret_values["node token"] = token
    files = [server.log_path, *sorted((server.data_dir / "logs").glob("*.log"))]
    assert len(files) >= 2, files
    stores = sorted(server.data_dir.glob("weir.db*"))
    assert stores, "no store file"
    for path in [*files, *stores]:
        data = Path(path).read_bytes()
        for name, value in secret_values.items():
            assert value.encode() not in data, f"{name} found in {path}"


def test_log_scan_finds_planted_secret(tmp_path):
    """The end-of-session scan of every server's logs reports a secret that is
    in a node log, so a clean scan means something."""
    from types import SimpleNamespace

    from conftest import find_secrets_in_logs

    key = new_key()
    data_dir = tmp_path / "data"
    (data_dir / "logs").mkdir(parents=True)
    log_path = tmp_path / "weir.log"
    log_path.write_text("Server started.\n")
    server = SimpleNamespace(key=key, other_key=None, data_dir=data_dir, log_path=log_path)
    assert find_secrets_in_logs([server]) == []
    (data_dir / "logs" / "node-1.log").write_text(f"request failed: secret={key.secret_key}\n")
    assert find_secrets_in_logs([server]) == [f"API secret key in {data_dir / 'logs' / 'node-1.log'}"]
