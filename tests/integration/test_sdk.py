"""Compatibility with the official Python SDK (huaweicloudsdkkafka 3.1.219):
every Smart Connect, background-task and instance operation the SDK has and
Weir serves, driven through the SDK's own client and response models.

The SDK converts values to the declared model types (int("5") passes), so
each check reads the JSON on the wire as well as the parsed model.
Every response must carry X-Request-Id, which the SDK reports as the
request_id of its exceptions.

The client is built with an endpoint and a project id and without a region,
so the SDK never contacts IAM or a real endpoint.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable

import pytest
import requests
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkcore.http.http_handler import HttpHandler
from huaweicloudsdkkafka.v2 import KafkaClient
from huaweicloudsdkkafka.v2.model import (
    CreateConnectorReq,
    CreateConnectorRequest,
    CreateConnectorResponse,
    CreateConnectorTaskRequest,
    CreateSmartConnectTaskReq,
    DeleteBackgroundTaskRequest,
    DeleteConnectorRequest,
    DeleteConnectorTaskRequest,
    ListBackgroundTasksRequest,
    ListBackgroundTasksRespTasks,
    ListConnectorTasksRequest,
    ListInstancesRequest,
    ModifyConnectorTaskRequest,
    PauseConnectorTaskRequest,
    RestartConnectorTaskRequest,
    RestartSmartConnectorTaskRequest,
    ResumeConnectorTaskRequest,
    ShowBackgroundTaskProgressRequest,
    ShowBackgroundTaskRequest,
    ShowConnectorResourceInfoRequest,
    ShowConnectorTaskRequest,
    ShowInstanceRequest,
    ShowInstanceResponse,
    SmartConnectTaskEntity,
    SmartConnectTaskReqSinkConfig,
    SmartConnectTaskReqSourceConfig,
    SmartConnectTaskRespSinkConfig,
    SmartConnectTaskRespSourceConfig,
    SmartConnectValidateEntity,
    StepDetail,
    ValidateConnectorConnectivityRequest,
)

from harness.tasks import obs_task, sink_config, task_name

UNKNOWN_ID = "00000000-0000-0000-0000-000000000000"
UNKNOWN_JOB = "0123456789abcdef0123456789abcdef"
SDK_TYPES = {"str": str, "int": int, "bool": bool}
MAX_TASKS = 18

INVALID = "DMS.00400062"
WRONG_TYPE = "DMS.00400085"
PEER_UNREACHABLE = "WEIR.00400101"
JOB_RUNNING = "DMS.00400017"
TASK_QUOTA = "DMS.00400039"
UNKNOWN_PATH = "DMS.00404001"
UNKNOWN_INSTANCE = "DMS.00404022"
NO_CONNECTOR = "DMS.00404024"
UNKNOWN_TASK = "DMS.00404026"
CONNECTOR_EXISTS = "DMS.00404027"

# The task entity (create, show, list, modify): every field is filled
# except that topics and topics_regex exclude each other.
TASK_FIELDS = {"id", "task_name", "source_type", "source_task", "sink_type", "sink_task", "status", "create_time"}
# Task statuses of the SDK documentation, plus CREATING, which terraform polls.
TASK_STATUSES = {"CREATING", "RUNNING", "PAUSED", "WAITING", "RESTARTING"}
# ShowInstance fields Weir fills; the other fields of the model describe
# cloud resources (VPC, storage, billing, public access) Weir has not.
INSTANCE_FIELDS = {
    "instance_id",
    "name",
    "engine",
    "engine_version",
    "specification",
    "status",
    "type",
    "charging_mode",
    "connect_address",
    "node_num",
    "broker_num",
    "created_at",
    "connector_enable",
    "connector_id",
    "connector_node_num",
}


# ---- client -------------------------------------------------------------------


@dataclass
class Sdk:
    """The SDK client and the HTTP response of its latest call."""

    client: KafkaClient
    responses: list[requests.Response] = field(default_factory=list)

    @property
    def last(self) -> requests.Response:
        assert self.responses, "the SDK sent no request"
        return self.responses[-1]


def build_sdk(server) -> Sdk:
    key = server.key
    config = HttpConfig.get_default_config()
    config.retry_times = 0
    sdk = Sdk(client=None)  # type: ignore[arg-type]
    handler = HttpHandler().add_response_handler(lambda **kwargs: sdk.responses.append(kwargs["response"]))
    sdk.client = (
        KafkaClient.new_builder()
        .with_http_config(config)
        .with_http_handler(handler)
        .with_credentials(BasicCredentials(key.access_key, key.secret_key, key.project_id))
        .with_endpoint(server.url)
        .build()
    )
    return sdk


def call(sdk: Sdk, method: str, request: Any, status: int) -> tuple[Any, Any]:
    """Call an SDK method, check the status and X-Request-Id; return the
    parsed response and the JSON on the wire (None for an empty body)."""
    response = getattr(sdk.client, method)(request)
    http = sdk.last
    assert response.status_code == status, f"{method}: HTTP {response.status_code}, expected {status}"
    assert http.headers.get("X-Request-Id"), f"{method}: no X-Request-Id"
    if status == 204:
        assert http.content == b"", f"{method}: 204 with a body {http.content[:200]!r}"
        return response, None
    return response, json.loads(http.content)


def call_error(sdk: Sdk, method: str, request: Any, status: int, code: str) -> ClientRequestException:
    """Call an SDK method that must raise ClientRequestException with `code`."""
    with pytest.raises(ClientRequestException) as raised:
        getattr(sdk.client, method)(request)
    error = raised.value
    assert error.status_code == status, f"{method}: HTTP {error.status_code} {error.error_code}, expected {status} {code}"
    assert error.error_code == code, f"{method}: {error.error_code} ({error.error_msg}), expected {code}"
    assert error.error_msg, f"{method}: empty error_msg"
    assert error.request_id, f"{method}: no request_id"
    assert error.request_id == sdk.last.headers.get("X-Request-Id")
    return error


def check_model(model_class: type, parsed: Any, wire: dict, fields: set[str], where: str) -> None:
    """Check that each field is declared by the SDK model, present on the
    wire with the declared JSON type, and parsed to the same value."""
    for name in sorted(fields):
        assert name in model_class.openapi_types, f"{where}: {model_class.__name__} declares no {name}"
        declared = model_class.openapi_types[name]
        key = model_class.attribute_map[name]
        assert key in wire, f"{where}: {key} missing on the wire"
        expected = SDK_TYPES.get(declared)
        if expected is not None:
            assert type(wire[key]) is expected, f"{where}: {key} = {wire[key]!r} is not {declared}"
            assert getattr(parsed, name) == wire[key], f"{where}: {name} parsed as {getattr(parsed, name)!r}"


def check_task_entity(parsed: Any, wire: dict, where: str) -> None:
    """Check a task entity: types, `{}` for the unused side, no secrets."""
    model = SmartConnectTaskEntity
    check_model(model, parsed, wire, TASK_FIELDS, where)
    assert ("topics" in wire) != ("topics_regex" in wire), f"{where}: exactly one of topics and topics_regex: {wire}"
    for key in ("topics", "topics_regex"):
        if key in wire:
            assert isinstance(wire[key], str), f"{where}: {key} is not a string"
    assert wire["create_time"] > 1_600_000_000_000, f"{where}: create_time is not epoch milliseconds"
    assert wire["source_task"] == {}, f"{where}: unused source_task is {wire['source_task']!r}, expected {{}}"
    assert wire["source_type"] == "NONE"
    assert wire["sink_type"] == "OBS_SINK"
    assert wire["status"] in TASK_STATUSES, f"{where}: status {wire['status']!r}"
    sink_fields = set(SmartConnectTaskRespSinkConfig.openapi_types)
    check_model(SmartConnectTaskRespSinkConfig, parsed.sink_task, wire["sink_task"], sink_fields, f"{where} sink_task")
    for secret in ("access_key", "secret_key"):
        assert secret not in wire["sink_task"], f"{where}: sink_task returns {secret}"
    source = parsed.source_task
    assert all(getattr(source, name) is None for name in SmartConnectTaskRespSourceConfig.openapi_types)


# ---- fixtures -------------------------------------------------------------------


@pytest.fixture(scope="module")
def sdk(module_server) -> Sdk:
    return build_sdk(module_server)


@pytest.fixture(scope="module")
def topics(broker) -> list[str]:
    names = [broker.unique_topic("sdk"), broker.unique_topic("sdk")]
    for name in names:
        broker.create_topic(name, 1)
    return names


@pytest.fixture(scope="module")
def env(sdk, module_server, broker, topics) -> SimpleNamespace:
    """An instance with Smart Connect enabled through the SDK, an instance
    without it, and one WAITING task."""
    api = module_server.api
    instance_id = api.add_instance(task_name("sdk"), broker.bootstrap, broker_num=1)
    bare_instance_id = api.add_instance(task_name("sdk-bare"), broker.bootstrap, broker_num=1)
    request = CreateConnectorRequest(instance_id=instance_id, body=CreateConnectorReq(node_cnt=2))
    created, created_wire = call(sdk, "create_connector", request, 200)
    api.wait_instance_status(instance_id, "RUNNING")
    waiting = create_task(sdk, instance_id, topics[0])
    return SimpleNamespace(
        api=api,
        instance_id=instance_id,
        bare_instance_id=bare_instance_id,
        created=created,
        created_wire=created_wire,
        task_id=waiting.id,
        topic=topics[0],
        topics=topics,
    )


def sdk_sink(**fields: Any) -> SmartConnectTaskReqSinkConfig:
    values = {
        "consumer_strategy": "earliest",
        "destination_file_type": "TEXT",
        "deliver_time_interval": 30,
        "access_key": "sdk-ak",
        "secret_key": "sdk-sk",
        "obs_bucket_name": "sdk-bucket",
        "obs_path": "sdk/path",
        "partition_format": "yyyy/MM/dd",
        "record_delimiter": "\n",
        "store_keys": False,
    }
    values.update(fields)
    return SmartConnectTaskReqSinkConfig(**values)


def task_request(instance_id: str, topic_names: str | None, start_later: bool = True, **fields: Any) -> CreateConnectorTaskRequest:
    """A CreateConnectorTask request of a WAITING task; `fields` replace body fields."""
    body = {
        "task_name": task_name("sdk"),
        "start_later": start_later,
        "topics": topic_names,
        "source_type": "NONE",
        "sink_type": "OBS_SINK",
        "sink_task": sdk_sink(),
    }
    body.update(fields)
    return CreateConnectorTaskRequest(instance_id=instance_id, body=CreateSmartConnectTaskReq(**body))


def create_task(sdk: Sdk, instance_id: str, topic_names: str, start_later: bool = True, **fields: Any):
    response, _ = call(sdk, "create_connector_task", task_request(instance_id, topic_names, start_later, **fields), 200)
    return response


def delete_task(sdk: Sdk, instance_id: str, task_id: str) -> None:
    call(sdk, "delete_connector_task", DeleteConnectorTaskRequest(instance_id=instance_id, task_id=task_id), 204)


def wait_status(sdk: Sdk, instance_id: str, task_id: str, status: str, timeout: float = 120) -> Any:
    """Poll ShowConnectorTask through the SDK until `status`."""
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while True:
        shown, _ = call(sdk, "show_connector_task", ShowConnectorTaskRequest(instance_id=instance_id, task_id=task_id), 200)
        if not seen or seen[-1] != shown.status:
            seen.append(shown.status)
        if shown.status == status:
            return shown
        assert time.monotonic() < deadline, f"task {task_id} not {status} after {timeout:.0f} s; states seen: {seen}"
        time.sleep(0.2)


# ---- connector and instance -----------------------------------------------------


def test_create_connector_response(env):
    assert env.created.status_code == 200
    check_model(CreateConnectorResponse, env.created, env.created_wire, {"job_id", "connector_id"}, "CreateConnector")
    uuid.UUID(env.created.connector_id)


def test_show_instance_fields(sdk, env):
    shown, wire = call(sdk, "show_instance", ShowInstanceRequest(instance_id=env.instance_id), 200)
    check_model(ShowInstanceResponse, shown, wire, INSTANCE_FIELDS, "ShowInstance")
    assert shown.instance_id == env.instance_id
    assert shown.engine == "kafka"
    assert shown.status == "RUNNING"
    assert shown.type == "cluster"
    assert shown.charging_mode == 1
    assert shown.created_at.isdigit(), f"created_at must be epoch milliseconds as text: {shown.created_at!r}"
    assert shown.connector_enable is True
    assert shown.connector_id == env.created.connector_id
    assert shown.connector_node_num == 2


def test_list_instances_filters(sdk, module_server, env):
    name = module_server.api.show_instance(env.instance_id)["name"]
    request = ListInstancesRequest(engine="kafka", name=name, exact_match_name="true", offset="0", limit="10")
    listed, wire = call(sdk, "list_instances", request, 200)
    assert type(wire["instance_num"]) is int
    assert listed.instance_num == 1
    assert [item.instance_id for item in listed.instances] == [env.instance_id]
    item_wire = wire["instances"][0]
    check_model(ShowInstanceResponse, listed.instances[0], item_wire, INSTANCE_FIELDS, "ListInstances item")

    everything, _ = call(sdk, "list_instances", ListInstancesRequest(engine="kafka", limit="50"), 200)
    ids = [item.instance_id for item in everything.instances]
    assert env.instance_id in ids
    assert env.bare_instance_id in ids
    assert everything.instance_num == len(ids)


def test_show_connector_resource_info(sdk, env):
    shown, wire = call(sdk, "show_connector_resource_info", ShowConnectorResourceInfoRequest(instance_id=env.instance_id), 200)
    assert wire == {"soldOut": False}
    assert shown.sold_out is False


# ---- tasks ---------------------------------------------------------------------


def test_create_task_entity(sdk, env):
    topics = ",".join(env.topics)
    created, wire = call(sdk, "create_connector_task", task_request(env.instance_id, topics), 200)
    check_task_entity(created, wire, "CreateConnectorTask")
    assert wire["topics"] == topics
    assert created.status == "WAITING"
    assert abs(created.create_time - time.time() * 1000) < 600_000, created.create_time
    assert created.sink_task.record_delimiter == "\n"
    assert created.sink_task.obs_bucket_name == "sdk-bucket"

    shown, shown_wire = call(sdk, "show_connector_task", ShowConnectorTaskRequest(instance_id=env.instance_id, task_id=created.id), 200)
    check_task_entity(shown, shown_wire, "ShowConnectorTask")
    for key in ("id", "task_name", "topics", "sink_task", "source_task", "create_time", "status"):
        assert shown_wire[key] == wire[key], key
    delete_task(sdk, env.instance_id, created.id)


def test_create_replicator_task_entity(sdk, env):
    source = SmartConnectTaskReqSourceConfig(
        current_cluster_name="local",
        cluster_name="peer",
        bootstrap_servers="127.0.0.1:9",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        user_name="sdk-user",
        password="sdk-password",
        direction="pull",
        task_num=3,
        replication_factor=1,
        rename_topic_enabled=True,
        provenance_header_enabled=True,
        sync_consumer_offsets_enabled=False,
        consumer_strategy="earliest",
        compression_type="lz4",
    )
    request = task_request(
        env.instance_id, env.topic, source_type="KAFKA_REPLICATOR_SOURCE", source_task=source, sink_type="NONE", sink_task=None
    )
    created, wire = call(sdk, "create_connector_task", request, 200)
    assert wire["sink_task"] == {}
    assert wire["source_type"] == "KAFKA_REPLICATOR_SOURCE"
    source_fields = set(SmartConnectTaskRespSourceConfig.openapi_types)
    check_model(SmartConnectTaskRespSourceConfig, created.source_task, wire["source_task"], source_fields - {"instance_id", "topics_mapping"}, "CreateConnectorTask source_task")
    assert "password" not in wire["source_task"]
    assert created.source_task.task_num == 3
    assert created.source_task.user_name == "sdk-user"
    assert created.source_task.direction == "pull"
    shown, shown_wire = call(sdk, "show_connector_task", ShowConnectorTaskRequest(instance_id=env.instance_id, task_id=created.id), 200)
    assert shown_wire["source_task"] == wire["source_task"]
    delete_task(sdk, env.instance_id, created.id)


def test_create_task_topics_regex(sdk, env):
    created, wire = call(sdk, "create_connector_task", task_request(env.instance_id, None, topics_regex="sdk-.*"), 200)
    check_task_entity(created, wire, "CreateConnectorTask regex")
    assert "topics" not in wire
    assert created.topics is None
    assert created.topics_regex == "sdk-.*"
    delete_task(sdk, env.instance_id, created.id)


def test_list_tasks_paging(sdk, env):
    extra = [create_task(sdk, env.instance_id, env.topic).id for _ in range(3)]
    # Without offset and limit, as terraform's first call: offset 0, limit 10.
    listed, wire = call(sdk, "list_connector_tasks", ListConnectorTasksRequest(instance_id=env.instance_id), 200)
    assert listed.total_number <= 10, "the first page must hold every task for the comparison below"
    for key in ("total_number", "max_tasks", "quota_tasks"):
        assert type(wire[key]) is int, f"{key} = {wire[key]!r}"
    assert listed.max_tasks == MAX_TASKS
    assert listed.quota_tasks == MAX_TASKS
    total = listed.total_number
    ids = [task.id for task in listed.tasks]
    assert set(extra) | {env.task_id} <= set(ids)
    for index, (task, task_wire) in enumerate(zip(listed.tasks, wire["tasks"])):
        check_task_entity(task, task_wire, f"ListConnectorTasks item {index}")

    paged = []
    for offset in range(0, total, 2):
        page, _ = call(sdk, "list_connector_tasks", ListConnectorTasksRequest(instance_id=env.instance_id, offset=offset, limit=2), 200)
        assert page.total_number == total
        paged.extend(task.id for task in page.tasks)
    assert paged == ids, "pages of 2 list the same tasks in the same order"
    past_end, past_wire = call(sdk, "list_connector_tasks", ListConnectorTasksRequest(instance_id=env.instance_id, offset=total, limit=10), 200)
    assert past_wire["tasks"] == []
    assert past_end.total_number == total
    for task_id in extra:
        delete_task(sdk, env.instance_id, task_id)


def test_modify_waiting_task(sdk, env):
    # Created without the SDK, because the SDK's sink model has no
    # obs_endpoint, which a modify through the SDK must keep.
    body = obs_task(env.topic, sink_config("sdk-bucket", "sdk/raw", "http://127.0.0.1:9"), start_later=True)
    task_id = env.api.create_task(env.instance_id, body).json()["id"]
    shown, _ = call(sdk, "show_connector_task", ShowConnectorTaskRequest(instance_id=env.instance_id, task_id=task_id), 200)
    shown.sink_task.deliver_time_interval = 120
    entity = SmartConnectTaskEntity(
        task_name=shown.task_name,
        topics=shown.topics,
        source_type=shown.source_type,
        source_task=shown.source_task,
        sink_type=shown.sink_type,
        sink_task=shown.sink_task,
    )
    request = ModifyConnectorTaskRequest(instance_id=env.instance_id, task_id=task_id, body=entity)
    modified, wire = call(sdk, "modify_connector_task", request, 200)
    check_task_entity(modified, wire, "ModifyConnectorTask")
    assert modified.id == task_id
    assert modified.sink_task.deliver_time_interval == 120
    assert modified.status == "WAITING"
    stored = env.api.show_task(env.instance_id, task_id)["sink_task"]
    assert stored["obs_endpoint"] == "http://127.0.0.1:9", "a modify through the SDK dropped obs_endpoint"
    assert stored["obs_path_style"] is True
    delete_task(sdk, env.instance_id, task_id)


def pause(sdk, instance_id, task_id):
    call(sdk, "pause_connector_task", PauseConnectorTaskRequest(instance_id=instance_id, task_id=task_id), 204)
    wait_status(sdk, instance_id, task_id, "PAUSED")


def run(sdk, instance_id, task_id):
    wait_status(sdk, instance_id, task_id, "RUNNING")


# (operation, method, request type, steps before the call, status after it)
ACTION_CASES = [
    ("RestartConnectorTask-start", "restart_connector_task", RestartConnectorTaskRequest, [], "RUNNING"),
    ("RestartConnectorTask-running", "restart_connector_task", RestartConnectorTaskRequest, ["start"], "RUNNING"),
    ("RestartSmartConnectorTask-paused", "restart_smart_connector_task", RestartSmartConnectorTaskRequest, ["start", "pause"], "RUNNING"),
    ("PauseConnectorTask-running", "pause_connector_task", PauseConnectorTaskRequest, ["start"], "PAUSED"),
    ("PauseConnectorTask-waiting", "pause_connector_task", PauseConnectorTaskRequest, [], "PAUSED"),
    ("ResumeConnectorTask-paused", "resume_connector_task", ResumeConnectorTaskRequest, ["start", "pause"], "RUNNING"),
]


@pytest.mark.parametrize(("method", "request_type", "steps", "status"), [c[1:] for c in ACTION_CASES], ids=[c[0] for c in ACTION_CASES])
def test_task_action(sdk, env, method, request_type, steps, status):
    task_id = create_task(sdk, env.instance_id, env.topic).id
    for step in steps:
        if step == "start":
            call(sdk, "restart_connector_task", RestartConnectorTaskRequest(instance_id=env.instance_id, task_id=task_id), 204)
            run(sdk, env.instance_id, task_id)
        elif step == "pause":
            pause(sdk, env.instance_id, task_id)
    response, _ = call(sdk, method, request_type(instance_id=env.instance_id, task_id=task_id), 204)
    assert response.status_code == 204
    wait_status(sdk, env.instance_id, task_id, status)
    delete_task(sdk, env.instance_id, task_id)


def test_delete_task_then_show_404(sdk, env):
    task_id = create_task(sdk, env.instance_id, env.topic).id
    response, _ = call(sdk, "delete_connector_task", DeleteConnectorTaskRequest(instance_id=env.instance_id, task_id=task_id), 204)
    assert response.status_code == 204
    call_error(sdk, "show_connector_task", ShowConnectorTaskRequest(instance_id=env.instance_id, task_id=task_id), 404, UNKNOWN_TASK)
    listed, _ = call(sdk, "list_connector_tasks", ListConnectorTasksRequest(instance_id=env.instance_id, limit=50), 200)
    assert task_id not in [task.id for task in listed.tasks]


def test_task_quota(sdk, env):
    listed, _ = call(sdk, "list_connector_tasks", ListConnectorTasksRequest(instance_id=env.instance_id, limit=50), 200)
    extra = [create_task(sdk, env.instance_id, env.topic).id for _ in range(MAX_TASKS - listed.total_number)]
    call_error(sdk, "create_connector_task", task_request(env.instance_id, env.topic), 400, TASK_QUOTA)
    for task_id in extra:
        delete_task(sdk, env.instance_id, task_id)


def test_duplicate_task_name(sdk, env):
    shown, _ = call(sdk, "show_connector_task", ShowConnectorTaskRequest(instance_id=env.instance_id, task_id=env.task_id), 200)
    call_error(sdk, "create_connector_task", task_request(env.instance_id, env.topic, task_name=shown.task_name), 400, INVALID)


# ---- background tasks -----------------------------------------------------------


def check_background_task(parsed: Any, wire: dict, where: str) -> None:
    check_model(ListBackgroundTasksRespTasks, parsed, wire, set(ListBackgroundTasksRespTasks.openapi_types), where)
    assert isinstance(json.loads(wire["params"]), dict), f"{where}: params is not a JSON object as text"
    assert wire["status"] in ("CREATED", "EXECUTING", "SUCCESS", "FAILED", "DELETED", "CANCELLED")
    for key in ("created_at", "updated_at"):
        parsed_time = datetime.strptime(wire[key], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert parsed_time.year >= 2020, f"{where}: {key} {wire[key]!r}"


def test_list_background_tasks(sdk, env):
    listed, wire = call(sdk, "list_background_tasks", ListBackgroundTasksRequest(instance_id=env.instance_id, start=1, limit=10), 200)
    assert type(wire["task_count"]) is str, f"task_count must be a string: {wire['task_count']!r}"
    assert int(listed.task_count) >= 1
    ids = [task.id for task in listed.tasks]
    assert env.created.job_id in ids
    for index, (task, task_wire) in enumerate(zip(listed.tasks, wire["tasks"])):
        check_background_task(task, task_wire, f"ListBackgroundTasks item {index}")

    window = ListBackgroundTasksRequest(
        instance_id=env.instance_id, start=1, limit=10, begin_time="20000101000000", end_time="29991231235959"
    )
    windowed, _ = call(sdk, "list_background_tasks", window, 200)
    assert [task.id for task in windowed.tasks] == ids
    past, past_wire = call(sdk, "list_background_tasks", ListBackgroundTasksRequest(instance_id=env.instance_id, start=1000, limit=10), 200)
    assert past_wire["tasks"] == []
    assert past.task_count == listed.task_count


def test_show_background_task(sdk, env):
    request = ShowBackgroundTaskRequest(instance_id=env.instance_id, task_id=env.created.job_id)
    shown, wire = call(sdk, "show_background_task", request, 200)
    assert wire["task_count"] == "1"
    assert len(shown.tasks) == 1
    check_background_task(shown.tasks[0], wire["tasks"][0], "ShowBackgroundTask")
    assert shown.tasks[0].id == env.created.job_id
    assert shown.tasks[0].status == "SUCCESS"


def test_show_background_task_progress(sdk, env):
    request = ShowBackgroundTaskProgressRequest(instance_id=env.instance_id, task_id=env.created.job_id)
    progress, wire = call(sdk, "show_background_task_progress", request, 200)
    assert type(wire["progress_percentage"]) is int
    assert type(wire["remain_time"]) is int
    assert progress.progress_percentage == 100
    assert progress.step_list, "no steps"
    for index, (step, step_wire) in enumerate(zip(progress.step_list, wire["step_list"])):
        check_model(StepDetail, step, step_wire, set(StepDetail.openapi_types), f"step {index}")
        assert step.statue == "COMPLETED"


def test_delete_background_task(sdk, module_server, broker):
    # A job of its own instance, so that the other tests keep theirs.
    api = module_server.api
    instance_id = api.add_instance(task_name("sdk-job"), broker.bootstrap, broker_num=1)
    created, _ = call(sdk, "create_connector", CreateConnectorRequest(instance_id=instance_id, body=CreateConnectorReq()), 200)
    api.wait_job_status(instance_id, created.job_id, "SUCCESS")
    request = DeleteBackgroundTaskRequest(instance_id=instance_id, task_id=created.job_id)
    response, _ = call(sdk, "delete_background_task", request, 204)
    assert response.status_code == 204
    call_error(sdk, "show_background_task", ShowBackgroundTaskRequest(instance_id=instance_id, task_id=created.job_id), 404, UNKNOWN_PATH)
    listed, _ = call(sdk, "list_background_tasks", ListBackgroundTasksRequest(instance_id=instance_id, start=1, limit=10), 200)
    assert created.job_id not in [task.id for task in listed.tasks]
    call(sdk, "delete_connector", DeleteConnectorRequest(instance_id=instance_id), 200)
    api.wait_instance_status(instance_id, "RUNNING")


def test_delete_executing_background_task(weir_server):
    # Without spawned nodes the CreateConnector job waits for nodes, EXECUTING.
    server = weir_server({"nodes": {"spawn": False}})
    own = build_sdk(server)
    instance_id = server.instance_ids[0]
    created, _ = call(own, "create_connector", CreateConnectorRequest(instance_id=instance_id, body=CreateConnectorReq(node_cnt=2)), 200)
    request = DeleteBackgroundTaskRequest(instance_id=instance_id, task_id=created.job_id)
    call_error(own, "delete_background_task", request, 400, JOB_RUNNING)
    call_error(own, "create_connector", CreateConnectorRequest(instance_id=instance_id, body=CreateConnectorReq()), 400, "DMS.00400026")


# ---- delete connector -----------------------------------------------------------


def test_delete_connector_flow(sdk, module_server, broker, topics):
    api = module_server.api
    instance_id = api.add_instance(task_name("sdk-del"), broker.bootstrap, broker_num=1)
    created, _ = call(sdk, "create_connector", CreateConnectorRequest(instance_id=instance_id, body=CreateConnectorReq(node_cnt=2)), 200)
    api.wait_instance_status(instance_id, "RUNNING")
    task_id = create_task(sdk, instance_id, topics[0]).id

    # Tasks must be deleted first.
    call_error(sdk, "delete_connector", DeleteConnectorRequest(instance_id=instance_id), 400, INVALID)
    delete_task(sdk, instance_id, task_id)

    deleted, wire = call(sdk, "delete_connector", DeleteConnectorRequest(instance_id=instance_id), 200)
    assert set(wire) == {"job_id"}
    assert isinstance(deleted.job_id, str) and deleted.job_id
    assert deleted.job_id != created.job_id
    api.wait_job_status(instance_id, deleted.job_id, "SUCCESS")
    shown, shown_wire = call(sdk, "show_instance", ShowInstanceRequest(instance_id=instance_id), 200)
    assert shown.status == "RUNNING"
    assert shown.connector_enable is False
    assert not shown.connector_id, f"connector_id not cleared: {shown.connector_id!r}"
    assert shown_wire["connector_node_num"] == 0

    call_error(sdk, "delete_connector", DeleteConnectorRequest(instance_id=instance_id), 404, NO_CONNECTOR)
    call_error(sdk, "list_connector_tasks", ListConnectorTasksRequest(instance_id=instance_id), 404, NO_CONNECTOR)
    call_error(sdk, "show_connector_task", ShowConnectorTaskRequest(instance_id=instance_id, task_id=task_id), 404, NO_CONNECTOR)


# ---- errors ------------------------------------------------------------------------


def _sink_error(**fields):
    return lambda env: task_request(env.instance_id, env.topic, sink_task=sdk_sink(**fields))


def _task_error(**fields):
    return lambda env: task_request(env.instance_id, env.topic, **fields)


def _on_task(request_type, instance=None, task=None):
    def build(env):
        return request_type(instance_id=instance or env.instance_id, task_id=task or env.task_id)

    return build


def _modify_unknown(env):
    entity = SmartConnectTaskEntity(task_name=task_name("sdk"), topics=env.topic, sink_type="OBS_SINK")
    return ModifyConnectorTaskRequest(instance_id=env.instance_id, task_id=UNKNOWN_ID, body=entity)


def _replicator(env):
    source = SmartConnectTaskReqSourceConfig(
        current_cluster_name="local",
        cluster_name="peer",
        bootstrap_servers="127.0.0.1:9",
        security_protocol="PLAINTEXT",
        direction="two-way",
        task_num=2,
    )
    return task_request(env.instance_id, env.topic, source_type="KAFKA_REPLICATOR_SOURCE", source_task=source, sink_type="NONE", sink_task=None)


def _validate(env):
    entity = SmartConnectValidateEntity(
        type="KAFKA_REPLICATOR_SOURCE",
        task=SmartConnectTaskRespSourceConfig(bootstrap_servers="127.0.0.1:9", security_protocol="PLAINTEXT"),
    )
    return ValidateConnectorConnectivityRequest(instance_id=env.instance_id, body=entity)


# (case, SDK method, request builder, HTTP status, error_code)
ERROR_CASES: list[tuple[str, str, Callable[[SimpleNamespace], Any], int, str]] = [
    # instances
    ("ShowInstance-unknown", "show_instance", lambda env: ShowInstanceRequest(instance_id=UNKNOWN_ID), 404, UNKNOWN_INSTANCE),
    ("ListInstances-bad-engine", "list_instances", lambda env: ListInstancesRequest(engine="rabbitmq"), 400, INVALID),
    ("ListInstances-bad-limit", "list_instances", lambda env: ListInstancesRequest(engine="kafka", limit="51"), 400, INVALID),
    # connector
    ("CreateConnector-unknown-instance", "create_connector", lambda env: CreateConnectorRequest(instance_id=UNKNOWN_ID, body=CreateConnectorReq()), 404, UNKNOWN_INSTANCE),
    ("CreateConnector-already-enabled", "create_connector", lambda env: CreateConnectorRequest(instance_id=env.instance_id, body=CreateConnectorReq(node_cnt=2)), 400, CONNECTOR_EXISTS),
    ("CreateConnector-node-cnt-1", "create_connector", lambda env: CreateConnectorRequest(instance_id=env.bare_instance_id, body=CreateConnectorReq(node_cnt=1)), 400, INVALID),
    ("CreateConnector-node-cnt-17", "create_connector", lambda env: CreateConnectorRequest(instance_id=env.bare_instance_id, body=CreateConnectorReq(node_cnt=17)), 400, INVALID),
    ("CreateConnector-specification", "create_connector", lambda env: CreateConnectorRequest(instance_id=env.bare_instance_id, body=CreateConnectorReq(specification="7MB")), 400, INVALID),
    ("CreateConnector-spec-code", "create_connector", lambda env: CreateConnectorRequest(instance_id=env.bare_instance_id, body=CreateConnectorReq(spec_code="kafka.c9.none")), 400, INVALID),
    ("DeleteConnector-unknown-instance", "delete_connector", lambda env: DeleteConnectorRequest(instance_id=UNKNOWN_ID), 404, UNKNOWN_INSTANCE),
    ("DeleteConnector-no-connector", "delete_connector", lambda env: DeleteConnectorRequest(instance_id=env.bare_instance_id), 404, NO_CONNECTOR),
    ("ShowConnectorResourceInfo-unknown", "show_connector_resource_info", lambda env: ShowConnectorResourceInfoRequest(instance_id=UNKNOWN_ID), 404, UNKNOWN_INSTANCE),
    # task creation
    ("CreateConnectorTask-unknown-instance", "create_connector_task", lambda env: task_request(UNKNOWN_ID, env.topic), 404, UNKNOWN_INSTANCE),
    ("CreateConnectorTask-no-connector", "create_connector_task", lambda env: task_request(env.bare_instance_id, env.topic), 404, NO_CONNECTOR),
    ("CreateConnectorTask-interval-29", "create_connector_task", _sink_error(deliver_time_interval=29), 400, INVALID),
    ("CreateConnectorTask-interval-901", "create_connector_task", _sink_error(deliver_time_interval=901), 400, INVALID),
    ("CreateConnectorTask-consumer-strategy", "create_connector_task", _sink_error(consumer_strategy="middle"), 400, INVALID),
    ("CreateConnectorTask-partition-format", "create_connector_task", _sink_error(partition_format="yyyy-MM"), 400, INVALID),
    ("CreateConnectorTask-record-delimiter", "create_connector_task", _sink_error(record_delimiter="#"), 400, INVALID),
    ("CreateConnectorTask-interval-text", "create_connector_task", _sink_error(deliver_time_interval="thirty"), 400, WRONG_TYPE),
    ("CreateConnectorTask-store-keys-text", "create_connector_task", _sink_error(store_keys="yes"), 400, WRONG_TYPE),
    ("CreateConnectorTask-file-type", "create_connector_task", _sink_error(destination_file_type="CSV"), 400, INVALID),
    ("CreateConnectorTask-bucket", "create_connector_task", _sink_error(obs_bucket_name="B"), 400, INVALID),
    ("CreateConnectorTask-task-name", "create_connector_task", _task_error(task_name="abc"), 400, INVALID),
    ("CreateConnectorTask-topics-and-regex", "create_connector_task", _task_error(topics_regex="sdk-.*"), 400, INVALID),
    ("CreateConnectorTask-regex-all", "create_connector_task", _task_error(topics=None, topics_regex=".*"), 400, INVALID),
    ("CreateConnectorTask-regex-invalid", "create_connector_task", _task_error(topics=None, topics_regex="(a"), 400, INVALID),
    ("CreateConnectorTask-sink-type", "create_connector_task", _task_error(sink_type="S3_SINK"), 400, INVALID),
    ("CreateConnectorTask-replicator-loop", "create_connector_task", _replicator, 400, INVALID),
    # task calls
    ("ListConnectorTasks-unknown-instance", "list_connector_tasks", lambda env: ListConnectorTasksRequest(instance_id=UNKNOWN_ID), 404, UNKNOWN_INSTANCE),
    ("ListConnectorTasks-limit-51", "list_connector_tasks", lambda env: ListConnectorTasksRequest(instance_id=env.instance_id, limit=51), 400, INVALID),
    ("ListConnectorTasks-offset-negative", "list_connector_tasks", lambda env: ListConnectorTasksRequest(instance_id=env.instance_id, offset=-1), 400, INVALID),
    ("ShowConnectorTask-unknown-task", "show_connector_task", _on_task(ShowConnectorTaskRequest, task=UNKNOWN_ID), 404, UNKNOWN_TASK),
    ("ShowConnectorTask-unknown-instance", "show_connector_task", _on_task(ShowConnectorTaskRequest, instance=UNKNOWN_ID), 404, UNKNOWN_INSTANCE),
    ("ModifyConnectorTask-unknown-task", "modify_connector_task", _modify_unknown, 404, UNKNOWN_TASK),
    ("DeleteConnectorTask-unknown-task", "delete_connector_task", _on_task(DeleteConnectorTaskRequest, task=UNKNOWN_ID), 404, UNKNOWN_TASK),
    ("PauseConnectorTask-unknown-task", "pause_connector_task", _on_task(PauseConnectorTaskRequest, task=UNKNOWN_ID), 404, UNKNOWN_TASK),
    ("ResumeConnectorTask-unknown-task", "resume_connector_task", _on_task(ResumeConnectorTaskRequest, task=UNKNOWN_ID), 404, UNKNOWN_TASK),
    ("RestartConnectorTask-unknown-task", "restart_connector_task", _on_task(RestartConnectorTaskRequest, task=UNKNOWN_ID), 404, UNKNOWN_TASK),
    ("RestartSmartConnectorTask-unknown-task", "restart_smart_connector_task", _on_task(RestartSmartConnectorTaskRequest, task=UNKNOWN_ID), 404, UNKNOWN_TASK),
    ("PauseConnectorTask-unknown-instance", "pause_connector_task", _on_task(PauseConnectorTaskRequest, instance=UNKNOWN_ID), 404, UNKNOWN_INSTANCE),
    # background tasks
    ("ListBackgroundTasks-unknown-instance", "list_background_tasks", lambda env: ListBackgroundTasksRequest(instance_id=UNKNOWN_ID), 404, UNKNOWN_INSTANCE),
    ("ListBackgroundTasks-limit-101", "list_background_tasks", lambda env: ListBackgroundTasksRequest(instance_id=env.instance_id, limit=101), 400, INVALID),
    ("ListBackgroundTasks-begin-time", "list_background_tasks", lambda env: ListBackgroundTasksRequest(instance_id=env.instance_id, begin_time="2024-01-01"), 400, INVALID),
    ("ShowBackgroundTask-unknown", "show_background_task", lambda env: ShowBackgroundTaskRequest(instance_id=env.instance_id, task_id=UNKNOWN_JOB), 404, UNKNOWN_PATH),
    ("ShowBackgroundTaskProgress-unknown", "show_background_task_progress", lambda env: ShowBackgroundTaskProgressRequest(instance_id=env.instance_id, task_id=UNKNOWN_JOB), 404, UNKNOWN_PATH),
    ("DeleteBackgroundTask-unknown", "delete_background_task", lambda env: DeleteBackgroundTaskRequest(instance_id=env.instance_id, task_id=UNKNOWN_JOB), 404, UNKNOWN_PATH),
    ("ValidateConnectorConnectivity-unreachable", "validate_connector_connectivity", _validate, 400, PEER_UNREACHABLE),
]


@pytest.mark.parametrize(("method", "build", "status", "code"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_error_response(sdk, env, method, build, status, code):
    call_error(sdk, method, build(env), status, code)


def test_modify_running_task_rejected(sdk, env):
    task_id = create_task(sdk, env.instance_id, env.topic, start_later=False).id
    shown = wait_status(sdk, env.instance_id, task_id, "RUNNING")
    entity = SmartConnectTaskEntity(task_name=shown.task_name, topics=shown.topics, sink_type="OBS_SINK", sink_task=shown.sink_task)
    request = ModifyConnectorTaskRequest(instance_id=env.instance_id, task_id=task_id, body=entity)
    call_error(sdk, "modify_connector_task", request, 400, INVALID)
    delete_task(sdk, env.instance_id, task_id)
