"""Replays of the request sequences of the terraform provider
(huaweicloud/terraform-provider-huaweicloud, services/kafka): Smart Connect
enable and disable, task create, read and delete, the task actions, and the
list data sources of tasks and background tasks.

Requests are signed the way golangsdk signs them (harness.terraform), and
every wait uses the StateChangeConf rules (harness.statechange). The waits
poll every POLL seconds from the start, much faster than terraform's 5 s, so
that a short-lived state the provider would reject is seen by the test too.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from harness.statechange import StateChangeConf
from harness.tasks import sink_config, task_name
from harness.terraform import TerraformClient, TerraformHttpError, job_state, retry_with_wait

POLL = 0.1
TIMEOUT = 120
# Fields terraform's read stores from sink_task, with the JSON type it needs.
SINK_READ_TYPES = {
    "consumer_strategy": str,
    "destination_file_type": str,
    "obs_bucket_name": str,
    "obs_path": str,
    "partition_format": str,
    "record_delimiter": str,
    "deliver_time_interval": int,
    "store_keys": bool,
    "obs_part_size": int,
    "flush_size": int,
    "timezone": str,
    "schema_generator_class": str,
    "partitioner_class": str,
    "key_converter": str,
    "value_converter": str,
    "kv_delimiter": str,
}
# Pending and target states of the task actions (smart_connect_task_action).
ACTIONS = {
    "start": ("/kafka", "restart", ["WAITING"], ["RUNNING"]),
    "pause": ("", "pause", ["RUNNING"], ["PAUSED"]),
    "resume": ("", "resume", ["PAUSED"], ["RUNNING"]),
    "restart": ("/kafka", "restart", ["PAUSED", "RESTARTING"], ["RUNNING"]),
}
# The steps of TestAccKafkaSmartConnectTaskAction_basic.
ACCEPTANCE_ORDER = ["start", "pause", "resume", "restart", "pause", "restart"]


@pytest.fixture(scope="module")
def terraform(module_server) -> TerraformClient:
    return TerraformClient(module_server.url, module_server.key)


@pytest.fixture(scope="module")
def connected_instance(module_server, broker) -> str:
    """An instance of the module server with Smart Connect enabled."""
    api = module_server.api
    instance_id = api.add_instance(f"tf-{uuid.uuid4().hex[:6]}", broker.bootstrap, broker_num=1)
    api.enable_connector(instance_id)
    return instance_id


@pytest.fixture(scope="module")
def tf_topic(broker) -> str:
    topic = broker.unique_topic("tf")
    broker.create_topic(topic, 2)
    return topic


def assert_request_ids(client: TerraformClient) -> None:
    missing = [f"{r.request.method} {r.request.path_url}" for r in client.responses if not r.headers.get("X-Request-Id")]
    assert not missing, f"responses without X-Request-Id: {missing}"


# ---- huaweicloud_dms_kafka_smart_connect ----------------------------------------


def enable_smart_connect(client: TerraformClient, instance_id: str, body: dict) -> tuple[dict, list, list[str]]:
    """resourceDmsKafkaSmartConnectCreate: POST with the busy retry, require
    connector_id, wait EXTENDING -> RUNNING, then read.

    Returns the CreateConnector body, the retried errors and the states the wait saw.
    """
    response, retried = retry_with_wait(
        lambda: client.request("POST", f"{client.instance_path(instance_id)}/connector", body=body),
        client.instance_state(instance_id),
        ["RUNNING"],
        timeout=TIMEOUT,
        delay=POLL,
        poll_interval=POLL,
    )
    connector_id = response.json().get("connector_id")
    assert isinstance(connector_id, str) and connector_id, f"no connector_id in {response.text}"
    wait = StateChangeConf(
        pending=["EXTENDING"], target=["RUNNING"], refresh=client.instance_state(instance_id), timeout=TIMEOUT, poll_interval=POLL
    )
    wait.wait()
    shown = client.request("GET", client.instance_path(instance_id)).json()
    assert shown.get("connector_id") == connector_id, "read would treat the connector as deleted"
    return response.json(), retried, wait.seen


def disable_smart_connect(client: TerraformClient, instance_id: str) -> tuple[list, list[str]]:
    """resourceDmsKafkaSmartConnectDelete: POST delete-connector with the busy
    retry, then wait CONNECTOR_DELETING -> RUNNING."""
    _, retried = retry_with_wait(
        lambda: client.request(
            "POST", f"/kafka{client.instance_path(instance_id)}/delete-connector", body={"instance_id": instance_id}
        ),
        client.instance_state(instance_id),
        ["RUNNING"],
        timeout=TIMEOUT,
        delay=POLL,
        poll_interval=POLL,
    )
    wait = StateChangeConf(
        pending=["CONNECTOR_DELETING"],
        target=["RUNNING"],
        refresh=client.instance_state(instance_id),
        timeout=TIMEOUT,
        poll_interval=POLL,
    )
    wait.wait()
    return retried, wait.seen


def test_smart_connect_enable_and_disable(terraform, module_server, broker):
    instance_id = module_server.api.add_instance(f"tf-{uuid.uuid4().hex[:6]}", broker.bootstrap, broker_num=1)

    # An empty config sends {} and takes the default node count.
    created, retried, seen = enable_smart_connect(terraform, instance_id, {})
    assert retried == []
    assert set(seen) <= {"EXTENDING", "RUNNING"}, seen
    shown = terraform.request("GET", terraform.instance_path(instance_id)).json()
    assert shown["connector_enable"] is True
    assert shown["connector_node_num"] == 2
    # waitForInstanceTaskStatusComplete on the job id of the response.
    StateChangeConf(
        pending=["PENDING"],
        target=["COMPLETED"],
        refresh=job_state(terraform, instance_id, created["job_id"]),
        timeout=TIMEOUT,
        poll_interval=POLL,
    ).wait()

    retried, seen = disable_smart_connect(terraform, instance_id)
    assert retried == []
    assert set(seen) <= {"CONNECTOR_DELETING", "RUNNING"}, seen
    shown = terraform.request("GET", terraform.instance_path(instance_id)).json()
    assert not shown.get("connector_id"), f"connector_id not cleared: {shown.get('connector_id')!r}"
    assert shown["connector_enable"] is False
    assert_request_ids(terraform)


def test_smart_connect_enable_retries_while_busy(terraform, module_server, broker):
    api = module_server.api
    instance_id = api.add_instance(f"tf-{uuid.uuid4().hex[:6]}", broker.bootstrap, broker_num=1)
    api.enable_connector(instance_id)
    # Disabling keeps the instance CONNECTOR_DELETING until the nodes leave,
    # so an enable sent now is rejected with DMS.00400026 and retried.
    api.delete_connector(instance_id)

    body = {"node_cnt": 2, "specification": "100MB", "spec_code": "kafka.c3.mini.connector"}
    created, retried, seen = enable_smart_connect(terraform, instance_id, body)

    assert [error.error_code for error in retried][:1] == ["DMS.00400026"], [e.body for e in retried]
    assert all(error.status == 400 for error in retried)
    assert set(seen) <= {"EXTENDING", "RUNNING"}, seen
    shown = terraform.request("GET", terraform.instance_path(instance_id)).json()
    assert shown["connector_id"] == created["connector_id"]

    disable_smart_connect(terraform, instance_id)
    assert_request_ids(terraform)


def test_smart_connect_enable_twice_is_rejected(terraform, connected_instance):
    with pytest.raises(TerraformHttpError) as raised:
        terraform.request("POST", f"{terraform.instance_path(connected_instance)}/connector", body={})
    assert raised.value.status == 400
    assert raised.value.error_code == "DMS.00404027"


# ---- huaweicloud_dms_kafkav2_smart_connect_task ---------------------------------


def task_body(topic: str, start_later: bool, **sink_fields) -> dict:
    """The body buildCreateKafkav2SmartConnectTaskBodyParams sends: empty
    values (false, 0, "") are left out."""
    sink = sink_config("tf-bucket", "tf/path", consumer_strategy="latest", **sink_fields)
    sink = {key: value for key, value in sink.items() if value not in (False, 0, "")}
    body = {
        "task_name": task_name("tf"),
        "topics": topic,
        "sink_type": "OBS_SINK",
        "source_type": "NONE",
        "sink_task": sink,
    }
    if start_later:
        body["start_later"] = True
    return body


def create_task(client: TerraformClient, instance_id: str, body: dict) -> tuple[str, list[str]]:
    """resourceDmsKafkav2SmartConnectTaskCreate: POST, require id, wait
    CREATING -> RUNNING or WAITING. Returns the id and the states seen."""
    response = client.request("POST", f"{client.instance_path(instance_id)}/connector/tasks", body=body)
    task_id = response.json().get("id")
    assert isinstance(task_id, str) and task_id, f"no id in {response.text}"
    wait = StateChangeConf(
        pending=["CREATING"],
        target=["RUNNING", "WAITING"],
        refresh=client.task_state(instance_id, task_id),
        timeout=TIMEOUT,
        delay=POLL,
        poll_interval=POLL,
    )
    wait.wait()
    return task_id, wait.seen


def read_task(client: TerraformClient, instance_id: str, task_id: str) -> dict | None:
    """resourceDmsKafkav2SmartConnectTaskRead: None when the task is gone
    (a 404, as CheckDeletedDiag treats it); any other error fails."""
    try:
        return client.request("GET", client.task_path(instance_id, task_id)).json()
    except TerraformHttpError as error:
        if error.status == 404:
            return None
        raise


def check_task_read(body: dict, topic: str, sink: dict) -> None:
    """The type assertions and block conversions of the task read."""
    assert isinstance(body.get("topics", ""), str), f"topics must be a comma-joined string: {body.get('topics')!r}"
    assert body.get("topics", "").split(",") == topic.split(",")
    assert type(body.get("create_time")) in (int, float), f"create_time must be a number: {body.get('create_time')!r}"
    assert body["create_time"] > 1_600_000_000_000, "create_time must be epoch milliseconds"
    # An empty object is "no block"; null or a missing field would be a
    # block of empty values and a perpetual diff.
    assert body.get("source_task") == {}, f"unused source_task must be {{}}: {body.get('source_task')!r}"
    assert body.get("source_type") == "NONE"
    assert body.get("sink_type") == "OBS_SINK"
    sink_task = body.get("sink_task")
    assert isinstance(sink_task, dict) and sink_task, f"sink_task: {sink_task!r}"
    for field, expected in SINK_READ_TYPES.items():
        assert type(sink_task.get(field)) is expected, f"sink_task.{field}: {sink_task.get(field)!r} is not {expected.__name__}"
    for field in ("access_key", "secret_key"):
        assert field not in sink_task, f"sink_task returns {field}"
    for field in ("obs_bucket_name", "consumer_strategy", "partition_format", "record_delimiter", "deliver_time_interval"):
        assert sink_task[field] == sink[field], field
    if "agency_name" in sink:
        assert sink_task.get("agency_name") == sink["agency_name"]
    assert isinstance(body.get("status"), str) and body["status"]
    assert isinstance(body.get("task_name"), str)


@pytest.mark.parametrize(("start_later", "target"), [(True, "WAITING"), (False, "RUNNING")], ids=["start-later", "start-now"])
def test_task_create_read_delete(terraform, connected_instance, tf_topic, start_later, target):
    body = task_body(tf_topic, start_later, agency_name="dms_tf_agency")
    task_id, seen = create_task(terraform, connected_instance, body)
    assert seen[-1] == target, seen
    assert set(seen) <= {"CREATING", target}, seen

    read = read_task(terraform, connected_instance, task_id)
    assert read is not None
    check_task_read(read, tf_topic, body["sink_task"])
    assert read["id"] == task_id
    assert read["task_name"] == body["task_name"]

    terraform.request("DELETE", terraform.task_path(connected_instance, task_id), ok_codes=(204,))
    assert read_task(terraform, connected_instance, task_id) is None
    assert_request_ids(terraform)


def test_task_create_with_topics_regex(terraform, connected_instance, tf_topic):
    body = task_body(tf_topic, True)
    del body["topics"]
    body["topics_regex"] = "tf-.*"
    task_id, _ = create_task(terraform, connected_instance, body)
    read = read_task(terraform, connected_instance, task_id)
    assert read is not None
    assert read.get("topics", "") == "", "topics must be absent or empty for a regex task"
    assert read["topics_regex"] == "tf-.*"
    terraform.request("DELETE", terraform.task_path(connected_instance, task_id), ok_codes=(204,))


# ---- huaweicloud_dms_kafka_smart_connect_task_action ----------------------------


def run_action(client: TerraformClient, instance_id: str, task_id: str, action: str) -> list[str]:
    """createSmartConnectTaskAction: PUT (only 204 accepted), then wait with
    the action's pending and target states. Returns the states seen."""
    prefix, verb, pending, target = ACTIONS[action]
    client.request("PUT", f"{prefix}{client.task_path(instance_id, task_id)}/{verb}", ok_codes=(204,))
    wait = StateChangeConf(
        pending=pending,
        target=target,
        refresh=client.task_state(instance_id, task_id),
        timeout=TIMEOUT,
        poll_interval=POLL,
    )
    wait.wait()
    return wait.seen


def test_task_actions_acceptance_order(terraform, connected_instance, tf_topic):
    task_id, _ = create_task(terraform, connected_instance, task_body(tf_topic, True))
    for step, action in enumerate(ACCEPTANCE_ORDER):
        _, _, pending, target = ACTIONS[action]
        seen = run_action(terraform, connected_instance, task_id, action)
        assert set(seen) <= set(pending) | set(target), f"step {step} ({action}): {seen}"
        assert seen[-1] in target, f"step {step} ({action}): {seen}"
    terraform.request("DELETE", terraform.task_path(connected_instance, task_id), ok_codes=(204,))
    assert_request_ids(terraform)


def test_task_pause_of_waiting_task(terraform, connected_instance, tf_topic):
    # Without a start first, pause finds the task WAITING and leaves it PAUSED.
    task_id, _ = create_task(terraform, connected_instance, task_body(tf_topic, True))
    for action in ["pause", "resume", "restart"]:
        seen = run_action(terraform, connected_instance, task_id, action)
        assert seen[-1] in ACTIONS[action][3], f"{action}: {seen}"
    terraform.request("DELETE", terraform.task_path(connected_instance, task_id), ok_codes=(204,))


# ---- list data sources ---------------------------------------------------------


def list_tasks_offset_pager(client: TerraformClient, instance_id: str) -> tuple[list[dict], list[tuple]]:
    """httphelper.OffsetPager("tasks", "offset", "limit", 0): the first call
    has no paging parameters, and each next call sends only `offset`, moved
    by the length of the page before. An empty page ends the loop.

    Returns the tasks and the (offset, page length) of every call.
    """
    tasks: list[dict] = []
    calls: list[tuple] = []
    offset = None
    while True:
        query = [] if offset is None else [("offset", offset)]
        body = client.request("GET", f"{client.instance_path(instance_id)}/connector/tasks", query=query).json()
        page = body.get("tasks")
        assert isinstance(page, list), f"tasks is not a list: {body}"
        calls.append((offset, len(page)))
        if not page:
            return tasks, calls
        tasks.extend(page)
        offset = (offset or 0) + len(page)
        assert len(calls) < 50, f"paging does not end: {calls}"


def test_task_list_paging_until_empty_page(terraform, module_server, broker, tf_topic):
    api = module_server.api
    instance_id = api.add_instance(f"tf-{uuid.uuid4().hex[:6]}", broker.bootstrap, broker_num=1)
    api.enable_connector(instance_id)
    created = []
    for _ in range(12):
        response = terraform.request("POST", f"{terraform.instance_path(instance_id)}/connector/tasks", body=task_body(tf_topic, True))
        created.append(response.json()["id"])

    tasks, calls = list_tasks_offset_pager(terraform, instance_id)

    assert [task["id"] for task in tasks] == created, "every task exactly once, in creation order"
    assert calls == [(None, 10), (10, 2), (12, 0)], calls
    for task in tasks:
        assert type(task["create_time"]) in (int, float), task["create_time"]
        assert task["source_task"] == {}
    for task_id in created:
        terraform.request("DELETE", terraform.task_path(instance_id, task_id), ok_codes=(204,))
    disable_smart_connect(terraform, instance_id)


def list_background_tasks(client: TerraformClient, instance_id: str, limit: int) -> tuple[list[dict], list[int]]:
    """DataSourceDmsKafkaBackgroundTasksRead: start at 1, move start by the
    page length, stop when int(task_count) <= start - 1.

    Returns the tasks and the start of every call.
    """
    tasks: list[dict] = []
    starts: list[int] = []
    start = 1
    while True:
        starts.append(start)
        body = client.request(
            "GET",
            f"{client.instance_path(instance_id)}/tasks",
            query=[("limit", limit), ("start", start)],
            content_type="application/json",
        ).json()
        page = body.get("tasks", [])
        tasks.extend(page)
        start += len(page)
        task_count = body.get("task_count", "0")
        assert isinstance(task_count, str), f"task_count must be a string: {task_count!r}"
        if int(task_count) <= start - 1:
            return tasks, starts
        assert page, f"empty page at start {start} while task_count is {task_count}: paging would not end"


def get_instance_tasks(client: TerraformClient, instance_id: str) -> list[dict]:
    """getInstanceTasks, which the wait by task name uses: limit=100 from
    start=1, moving start by the page length, until a page has fewer than
    100 records."""
    found: list[dict] = []
    start = 1
    while True:
        body = client.request(
            "GET",
            f"{client.instance_path(instance_id)}/tasks",
            query=[("limit", 100), ("start", start)],
            content_type="application/json",
        ).json()
        page = body["tasks"]
        found.extend(page)
        if len(page) < 100:
            return found
        start += len(page)


@pytest.mark.timeout(900)
def test_background_task_paging(weir_server):
    # Without spawned nodes and with no time to wait for them, every
    # CreateConnector job fails at once, which makes jobs quickly.
    server = weir_server({"server": {"job_timeout_s": 0}, "nodes": {"spawn": False}})
    api = server.api
    instance_id = server.instance_ids[0]
    client = TerraformClient(server.url, server.key)
    job_ids = []
    for _ in range(105):
        job_ids.append(api.create_connector(instance_id, {"node_cnt": 2}).json()["job_id"])
        api.wait_instance_status(instance_id, "RUNNING", timeout=30)

    for limit, expected_starts in [(100, [1, 101]), (10, list(range(1, 106, 10)))]:
        tasks, starts = list_background_tasks(client, instance_id, limit)
        assert starts == expected_starts, f"limit {limit}: {starts}"
        assert sorted(task["id"] for task in tasks) == sorted(job_ids), f"limit {limit}: every job exactly once"
        for task in tasks:
            assert isinstance(task["params"], str)
            json.loads(task["params"])
            assert isinstance(task["created_at"], str)

    listed = get_instance_tasks(client, instance_id)
    assert sorted(task["id"] for task in listed) == sorted(job_ids)
    assert_request_ids(client)


def test_task_status_after_nodes_stop(weir_server, broker, tf_topic):
    # After a resume the task shows PAUSED only until a node runs it. Nodes
    # that stop later must not bring PAUSED back: the task shows CREATING.
    server = weir_server({"nodes": {"spawn": False}})
    api = server.api
    instance_id = server.instance_ids[0]
    created = api.create_connector(instance_id, {"node_cnt": 2}).json()
    token = api.node_token(instance_id)
    nodes = [
        server.start_node(token["connector_id"], token["token"], server.work_dir, node_id=f"manual-{index}")
        for index in range(2)
    ]
    api.wait_job_status(instance_id, created["job_id"], "SUCCESS")
    client = TerraformClient(server.url, server.key)
    task_id, _ = create_task(client, instance_id, task_body(tf_topic, True))
    for action in ["start", "pause", "resume"]:
        run_action(client, instance_id, task_id, action)
    # Two more heartbeats, so that the nodes' reports of the run are stored.
    time.sleep(4 * server.config["nodes"]["heartbeat_interval_ms"] / 1000)

    for node in nodes:
        node.kill9()
    wait = StateChangeConf(
        pending=["RUNNING"],
        target=["CREATING"],
        refresh=client.task_state(instance_id, task_id),
        timeout=TIMEOUT,
        poll_interval=POLL,
    )
    wait.wait()
    assert wait.seen == ["RUNNING", "CREATING"], wait.seen
