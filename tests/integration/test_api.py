"""Shapes, status codes and error codes of the v2 API (connector, tasks,
background tasks, instances), authentication and paging."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests

from harness.api import ApiClient, Key, canonical_request, signature
from harness.checks import assert_error, assert_no_content, assert_ok, assert_request_id
from harness.tasks import obs_task, sink_config

# The request of the CreateConnector API page, byte for byte.
SEED_BODY = b'{\n  "specification" : "100MB",\n  "node_cnt" : "",\n  "spec_code" : "kafka.c3.mini.connector"\n}'

INVALID = "DMS.00400062"
WRONG_TYPE = "DMS.00400085"
MALFORMED = "DMS.00400005"
EMPTY_BODY = "DMS.00400004"
BUSY = "DMS.00400026"
UNKNOWN_INSTANCE = "DMS.00404022"
NO_CONNECTOR = "DMS.00404024"
UNKNOWN_TASK = "DMS.00404026"
UNKNOWN_JOB = "DMS.00404001"
CONNECTOR_EXISTS = "DMS.00404027"
TASK_QUOTA = "DMS.00400039"
AUTH_FAILED = "APIGW.0301"
DATE_SKEW = "APIGW.0303"

SINK_RESPONSE_FIELDS = {
    "consumer_strategy",
    "destination_file_type",
    "deliver_time_interval",
    "obs_bucket_name",
    "obs_path",
    "partition_format",
    "record_delimiter",
    "store_keys",
    "obs_part_size",
    "flush_size",
    "timezone",
    "kv_delimiter",
}


@pytest.fixture(scope="module")
def api(module_server) -> ApiClient:
    return module_server.api


@pytest.fixture(scope="module")
def api_topic(module_server, broker) -> str:
    topic = broker.unique_topic("api")
    broker.create_topic(topic, 2)
    broker.produce(topic, [(b"k", b"v%d" % i, None) for i in range(10)])
    return topic


@pytest.fixture(scope="module")
def connected_instance(module_server, broker) -> str:
    """An instance of the module server with a RUNNING connector."""
    api = module_server.api
    instance_id = api.add_instance(f"conn-{uuid.uuid4().hex[:6]}", broker.bootstrap, broker_num=1)
    api.enable_connector(instance_id)
    return instance_id


def waiting_task(topic: str, **fields) -> dict:
    """A task body that is created with start_later, so it does no work."""
    return obs_task(topic, sink_config("api-bucket", "api"), start_later=True, **fields)


def tasks_path(api: ApiClient, instance_id: str) -> str:
    return f"{api.instance_path(instance_id)}/connector/tasks"


# ---- CreateConnector ----------------------------------------------------------


def test_seed_create_connector(api, fresh_instance):
    response = api.create_connector(fresh_instance, SEED_BODY, expect=None)
    body = assert_ok(response)
    assert set(body) >= {"job_id", "connector_id"}, body
    assert isinstance(body["job_id"], str) and body["job_id"]
    assert isinstance(body["connector_id"], str) and body["connector_id"]

    shown = api.wait_instance_status(fresh_instance, "RUNNING")
    assert shown["connector_id"] == body["connector_id"]
    assert shown["connector_node_num"] == 2
    assert shown["connector_enable"] is True


def test_create_connector_empty_object_defaults(api, fresh_instance):
    # Terraform sends "{}" and a newline when nothing is set.
    created = assert_ok(api.create_connector(fresh_instance, b"{}\n", expect=None))
    shown = api.wait_instance_status(fresh_instance, "RUNNING")
    assert shown["connector_id"] == created["connector_id"]
    assert shown["connector_node_num"] == 2


def test_create_connector_numeric_string(api, fresh_instance):
    assert_ok(api.create_connector(fresh_instance, b'{"node_cnt": "3"}', expect=None))
    shown = api.wait_instance_status(fresh_instance, "RUNNING")
    assert shown["connector_node_num"] == 3


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"node_cnt": "1"}', INVALID),
        (b'{"node_cnt": 1}', INVALID),
        (b'{"node_cnt": "abc"}', INVALID),
        (b'{"node_cnt": 17}', INVALID),
        (b'{"node_cnt": -2}', INVALID),
        (b'{"node_cnt": true}', WRONG_TYPE),
        (b'{"node_cnt": [2]}', WRONG_TYPE),
        (b'{"specification": "50MB"}', INVALID),
        (b'{"specification": 100}', WRONG_TYPE),
        (b'{"spec_code": "no.such.connector"}', INVALID),
        (b'{"node_cnt": ', MALFORMED),
        (b"[2]", MALFORMED),
    ],
    ids=lambda value: value.decode() if isinstance(value, bytes) else value,
)
def test_create_connector_rejects(api, fresh_instance, body, code):
    assert_error(api.create_connector(fresh_instance, body, expect=None), 400, code)
    shown = api.show_instance(fresh_instance)
    assert shown["status"] == "RUNNING"
    assert not shown.get("connector_enable")


def test_create_connector_unknown_instance(api):
    response = api.create_connector(str(uuid.uuid4()), {"node_cnt": 2}, expect=None)
    assert_error(response, 404, UNKNOWN_INSTANCE)


def test_second_connector_rejected(api, connected_instance):
    response = api.create_connector(connected_instance, {"node_cnt": 2}, expect=None)
    assert_error(response, 400, CONNECTOR_EXISTS)


# ---- ShowConnectorResourceInfo and DeleteConnector ------------------------------


def test_connector_resource_info(api, fresh_instance):
    response = api.call("GET", f"{api.instance_path(fresh_instance)}/connector", expect=None)
    assert assert_ok(response) == {"soldOut": False}


@pytest.mark.parametrize("terraform_body", [False, True], ids=["no-body", "terraform-body"])
def test_delete_connector(api, fresh_instance, terraform_body):
    api.enable_connector(fresh_instance)
    # The SDK sends no body; terraform sends {"instance_id": ...}.
    body = {"instance_id": fresh_instance} if terraform_body else None
    response = api.delete_connector(fresh_instance, body, expect=None)
    deleted = assert_ok(response)
    assert isinstance(deleted.get("job_id"), str) and deleted["job_id"], deleted

    shown = api.wait_instance_status(fresh_instance, "RUNNING")
    assert shown["connector_enable"] is False
    assert not shown.get("connector_id")
    job = api.wait_job_status(fresh_instance, deleted["job_id"], "SUCCESS")
    assert job["id"] == deleted["job_id"]


def test_delete_connector_without_connector(api, fresh_instance):
    assert_error(api.delete_connector(fresh_instance, None, expect=None), 404, NO_CONNECTOR)


def test_delete_connector_unknown_instance(api):
    assert_error(api.delete_connector(str(uuid.uuid4()), None, expect=None), 404, UNKNOWN_INSTANCE)


# ---- tasks --------------------------------------------------------------------


def test_create_task_entity(api, connected_instance, api_topic):
    body = waiting_task(api_topic)
    response = api.create_task(connected_instance, body, expect=None)
    entity = assert_ok(response)

    assert isinstance(entity.get("id"), str) and entity["id"]
    assert entity["task_name"] == body["task_name"]
    assert entity["topics"] == api_topic
    assert entity["source_type"] == "NONE"
    assert entity["source_task"] == {}
    assert entity["sink_type"] == "OBS_SINK"
    assert "start_later" not in entity
    assert entity["status"] in ("CREATING", "WAITING")
    assert isinstance(entity["create_time"], int)
    assert abs(entity["create_time"] - time.time() * 1000) < 10 * 60 * 1000

    sink = entity["sink_task"]
    assert SINK_RESPONSE_FIELDS <= set(sink), sorted(SINK_RESPONSE_FIELDS - set(sink))
    assert "access_key" not in sink
    assert "secret_key" not in sink
    assert sink["obs_part_size"] == 5242880
    assert sink["flush_size"] == 1000000
    assert sink["kv_delimiter"] == ":"
    assert sink["deliver_time_interval"] == 30
    assert sink["timezone"] == "UTC"  # the server's configured time zone
    assert sink["destination_file_type"] == "TEXT"
    assert sink["obs_bucket_name"] == "api-bucket"

    shown = api.show_task(connected_instance, entity["id"])
    assert shown["id"] == entity["id"]
    assert shown["task_name"] == entity["task_name"]
    assert shown["sink_task"] == sink
    api.wait_task_status(connected_instance, entity["id"], "WAITING")


@pytest.mark.parametrize("delimiter", ["\n", "\\n", ",", ";", "|", "NULL"])
def test_record_delimiter_echoed(api, connected_instance, api_topic, delimiter):
    body = waiting_task(api_topic)
    body["sink_task"]["record_delimiter"] = delimiter
    entity = assert_ok(api.create_task(connected_instance, body, expect=None))
    assert entity["sink_task"]["record_delimiter"] == delimiter
    api.delete_task(connected_instance, entity["id"])


def test_create_task_topics_regex(api, connected_instance, api_topic):
    body = waiting_task(api_topic)
    del body["topics"]
    body["topics_regex"] = "api-.*"
    entity = assert_ok(api.create_task(connected_instance, body, expect=None))
    assert entity["topics_regex"] == "api-.*"
    assert not entity.get("topics")
    api.delete_task(connected_instance, entity["id"])


def test_create_task_accepts_interval_bounds(api, connected_instance, api_topic):
    for seconds in (30, 900):
        body = waiting_task(api_topic)
        body["sink_task"]["deliver_time_interval"] = seconds
        entity = assert_ok(api.create_task(connected_instance, body, expect=None))
        assert entity["sink_task"]["deliver_time_interval"] == seconds
        api.delete_task(connected_instance, entity["id"])


def _with_sink(**fields):
    def change(body):
        body["sink_task"].update(fields)

    return change


def _with(**fields):
    def change(body):
        body.update(fields)

    return change


def _without(name):
    def change(body):
        body.pop(name)

    return change


def _both_topic_forms(body):
    body["topics_regex"] = "api-.*"


def _no_topics(body):
    body.pop("topics")


INVALID_TASKS = [
    ("topics-and-regex", _both_topic_forms, INVALID),
    ("no-topics", _no_topics, INVALID),
    ("sink-type", _with(sink_type="S3_SINK"), INVALID),
    ("source-type", _with(source_type="FILE_SOURCE"), INVALID),
    ("task-name-short", _with(task_name="abc"), INVALID),
    ("task-name-chars", _with(task_name="bad name!"), INVALID),
    ("task-name-long", _with(task_name="n" * 65), INVALID),
    ("consumer-strategy", _with_sink(consumer_strategy="middle"), INVALID),
    ("file-type", _with_sink(destination_file_type="CSV"), INVALID),
    ("partition-format", _with_sink(partition_format="yyyy/dd"), INVALID),
    ("record-delimiter", _with_sink(record_delimiter="#"), INVALID),
    ("interval-29", _with_sink(deliver_time_interval=29), INVALID),
    ("interval-901", _with_sink(deliver_time_interval=901), INVALID),
    ("flush-size-0", _with_sink(flush_size=0), INVALID),
    ("part-size-1023", _with_sink(obs_part_size=1023), INVALID),
    ("timezone", _with_sink(timezone="Mars/Olympus_Mons"), INVALID),
    ("interval-type", _with_sink(deliver_time_interval="thirty"), WRONG_TYPE),
    ("store-keys-type", _with_sink(store_keys="yes"), WRONG_TYPE),
    ("topics-type", _with(topics=5), WRONG_TYPE),
    ("sink-task-type", _with(sink_task="OBS"), WRONG_TYPE),
    ("start-later-type", _with(start_later="true"), WRONG_TYPE),
]


@pytest.mark.parametrize(("change", "code"), [case[1:] for case in INVALID_TASKS], ids=[c[0] for c in INVALID_TASKS])
def test_create_task_rejects(api, connected_instance, api_topic, change, code):
    body = waiting_task(api_topic)
    change(body)
    before = api.list_tasks(connected_instance, [("limit", 50)])["total_number"]
    assert_error(api.create_task(connected_instance, body, expect=None), 400, code)
    assert api.list_tasks(connected_instance, [("limit", 50)])["total_number"] == before


@pytest.mark.parametrize(
    ("raw", "code"),
    [(b'{"task_name": ', MALFORMED), (b'"task"', MALFORMED), (b"[]", MALFORMED), (b"", EMPTY_BODY)],
    ids=["truncated", "string", "array", "empty"],
)
def test_create_task_bad_body(api, connected_instance, raw, code):
    response = api.call("POST", tasks_path(api, connected_instance), body=raw, expect=None)
    assert_error(response, 400, code)


def test_duplicate_task_name(api, connected_instance, api_topic):
    body = waiting_task(api_topic)
    first = assert_ok(api.create_task(connected_instance, body, expect=None))
    again = waiting_task(api_topic, task_name=body["task_name"])
    assert_error(api.create_task(connected_instance, again, expect=None), 400, INVALID)
    api.delete_task(connected_instance, first["id"])


def test_task_calls_without_connector(api, fresh_instance, api_topic):
    task_id = str(uuid.uuid4())
    assert_error(api.create_task(fresh_instance, waiting_task(api_topic), expect=None), 404, NO_CONNECTOR)
    assert_error(api.call("GET", tasks_path(api, fresh_instance), expect=None), 404, NO_CONNECTOR)
    assert_error(api.call("GET", api.task_path(fresh_instance, task_id), expect=None), 404, NO_CONNECTOR)


def test_task_calls_unknown_instance(api, api_topic):
    instance_id = str(uuid.uuid4())
    assert_error(api.create_task(instance_id, waiting_task(api_topic), expect=None), 404, UNKNOWN_INSTANCE)
    assert_error(api.call("GET", tasks_path(api, instance_id), expect=None), 404, UNKNOWN_INSTANCE)


def test_unknown_task_is_404(api, connected_instance):
    task_id = str(uuid.uuid4())
    path = api.task_path(connected_instance, task_id)
    calls = [
        ("GET", path, None),
        ("PUT", path, waiting_task("unknown-task-topic")),
        ("DELETE", path, None),
        ("PUT", f"{path}/pause", None),
        ("PUT", f"{path}/resume", None),
        ("PUT", f"{path}/restart", None),
        ("PUT", f"/kafka{path}/restart", None),
    ]
    for method, suffix, body in calls:
        assert_error(api.call(method, suffix, body=body, expect=None), 404, UNKNOWN_TASK)


def test_task_actions_return_204(api, connected_instance, api_topic):
    entity = assert_ok(api.create_task(connected_instance, waiting_task(api_topic), expect=None))
    task_id = entity["id"]
    api.wait_task_status(connected_instance, task_id, "WAITING")

    assert_no_content(api.task_action(connected_instance, task_id, "restart_kafka", expect=None))
    api.wait_task_status(connected_instance, task_id, "RUNNING")
    assert_no_content(api.task_action(connected_instance, task_id, "pause", expect=None))
    api.wait_task_status(connected_instance, task_id, "PAUSED")
    assert_no_content(api.task_action(connected_instance, task_id, "resume", expect=None))
    api.wait_task_status(connected_instance, task_id, "RUNNING")
    assert_no_content(api.task_action(connected_instance, task_id, "restart", expect=None))
    api.wait_task_status(connected_instance, task_id, "RUNNING")
    assert_no_content(api.delete_task(connected_instance, task_id, expect=None))
    assert_error(api.call("GET", api.task_path(connected_instance, task_id), expect=None), 404, UNKNOWN_TASK)


def test_modify_task_returns_entity(api, connected_instance, api_topic):
    entity = assert_ok(api.create_task(connected_instance, waiting_task(api_topic), expect=None))
    shown = api.wait_task_status(connected_instance, entity["id"], "WAITING")
    response = api.call("PUT", api.task_path(connected_instance, entity["id"]), body=shown, expect=None)
    modified = assert_ok(response)
    assert modified["id"] == entity["id"]
    assert modified["task_name"] == entity["task_name"]
    assert modified["topics"] == entity["topics"]
    assert modified["sink_task"] == shown["sink_task"]
    api.delete_task(connected_instance, entity["id"])


def test_list_tasks_paging(api, fresh_instance, api_topic):
    api.enable_connector(fresh_instance)
    created = [assert_ok(api.create_task(fresh_instance, waiting_task(api_topic), expect=None))["id"] for _ in range(5)]

    listing = assert_ok(api.call("GET", tasks_path(api, fresh_instance), expect=None))
    assert listing["total_number"] == 5
    assert listing["max_tasks"] == 18
    assert listing["quota_tasks"] == 18
    assert sorted(task["id"] for task in listing["tasks"]) == sorted(created)

    # Terraform's paging: next offset = offset + items returned, until an empty page.
    seen = []
    offset = 0
    for _ in range(10):
        page = api.list_tasks(fresh_instance, [("offset", offset), ("limit", 2)])
        assert page["total_number"] == 5
        if not page["tasks"]:
            break
        assert len(page["tasks"]) <= 2
        seen += [task["id"] for task in page["tasks"]]
        offset += len(page["tasks"])
    assert sorted(seen) == sorted(created)
    assert len(seen) == len(set(seen))

    assert api.list_tasks(fresh_instance, [("offset", 5), ("limit", 10)])["tasks"] == []
    assert api.list_tasks(fresh_instance, [("offset", 500)])["tasks"] == []


def test_task_quota(api, fresh_instance, api_topic):
    api.enable_connector(fresh_instance)
    for _ in range(18):
        api.create_task(fresh_instance, waiting_task(api_topic))
    response = api.create_task(fresh_instance, waiting_task(api_topic), expect=None)
    assert_error(response, 400, TASK_QUOTA)
    assert api.list_tasks(fresh_instance, [("limit", 50)])["total_number"] == 18


# ---- background tasks -----------------------------------------------------------

ISO_8601 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$")


def test_background_task_shape(api, fresh_instance):
    job_id = api.create_connector(fresh_instance, {}).json()["job_id"]
    api.wait_job_status(fresh_instance, job_id, "SUCCESS")

    shown = assert_ok(api.call("GET", f"{api.instance_path(fresh_instance)}/tasks/{job_id}", expect=None))
    assert shown["task_count"] == "1"
    assert len(shown["tasks"]) == 1
    job = shown["tasks"][0]
    assert set(job) >= {"id", "name", "user_name", "user_id", "params", "status", "created_at", "updated_at"}, job
    assert job["id"] == job_id
    assert job["status"] == "SUCCESS"
    assert isinstance(job["params"], str)
    json.loads(job["params"])
    assert ISO_8601.match(job["created_at"]), job["created_at"]
    assert ISO_8601.match(job["updated_at"]), job["updated_at"]

    progress = assert_ok(api.call("GET", f"{api.instance_path(fresh_instance)}/tasks/{job_id}/progress", expect=None))
    assert isinstance(progress["progress_percentage"], int)
    assert isinstance(progress["remain_time"], int)
    assert isinstance(progress["step_list"], list)
    for step in progress["step_list"]:
        assert set(step) >= {"name", "statue", "start_time", "end_time"}, step
        assert step["statue"] in ("COMPLETED", "IN_PROGRESS", "FAILED", "WAITING")


def test_background_task_paging(api, fresh_instance):
    # Three jobs: enable, disable, enable.
    jobs = [api.create_connector(fresh_instance, {}).json()["job_id"]]
    api.wait_job_status(fresh_instance, jobs[-1], "SUCCESS")
    api.wait_instance_status(fresh_instance, "RUNNING")
    jobs.append(api.delete_connector(fresh_instance).json()["job_id"])
    api.wait_job_status(fresh_instance, jobs[-1], "SUCCESS")
    api.wait_instance_status(fresh_instance, "RUNNING")
    jobs.append(api.create_connector(fresh_instance, {}).json()["job_id"])
    api.wait_job_status(fresh_instance, jobs[-1], "SUCCESS")

    listing = api.list_jobs(fresh_instance, [("start", 1), ("limit", 10)])
    assert listing["task_count"] == "3"
    assert sorted(job["id"] for job in listing["tasks"]) == sorted(jobs)

    # start is 1-based: start=1 is the first record, start=3 the last.
    seen = []
    for start in (1, 2, 3):
        page = api.list_jobs(fresh_instance, [("start", start), ("limit", 1)])
        assert page["task_count"] == "3", page
        assert len(page["tasks"]) == 1, page
        seen.append(page["tasks"][0]["id"])
    assert seen == [job["id"] for job in listing["tasks"]]

    two = api.list_jobs(fresh_instance, [("start", 2), ("limit", 2)])
    assert [job["id"] for job in two["tasks"]] == seen[1:]
    assert api.list_jobs(fresh_instance, [("start", 4), ("limit", 10)])["tasks"] == []

    now = datetime.now(timezone.utc)
    window = [
        ("begin_time", (now - timedelta(hours=1)).strftime("%Y%m%d%H%M%S")),
        ("end_time", (now + timedelta(hours=1)).strftime("%Y%m%d%H%M%S")),
        ("start", 1),
        ("limit", 10),
    ]
    assert api.list_jobs(fresh_instance, window)["task_count"] == "3"
    past = [
        ("begin_time", "20000101000000"),
        ("end_time", "20000102000000"),
        ("start", 1),
        ("limit", 10),
    ]
    assert api.list_jobs(fresh_instance, past)["task_count"] == "0"


def test_delete_background_task(api, fresh_instance):
    job_id = api.create_connector(fresh_instance, {}).json()["job_id"]
    api.wait_job_status(fresh_instance, job_id, "SUCCESS")
    path = f"{api.instance_path(fresh_instance)}/tasks/{job_id}"
    assert_no_content(api.call("DELETE", path, expect=None))
    assert_error(api.call("GET", path, expect=None), 404, UNKNOWN_JOB)


def test_unknown_background_task(api, fresh_instance):
    path = f"{api.instance_path(fresh_instance)}/tasks/{uuid.uuid4().hex}"
    assert_error(api.call("GET", path, expect=None), 404, UNKNOWN_JOB)
    assert_error(api.call("GET", f"{path}/progress", expect=None), 404, UNKNOWN_JOB)
    assert_error(api.call("DELETE", path, expect=None), 404, UNKNOWN_JOB)


def test_background_tasks_unknown_instance(api):
    path = f"{api.instance_path(str(uuid.uuid4()))}/tasks"
    assert_error(api.call("GET", path, expect=None), 404, UNKNOWN_INSTANCE)


# ---- instances ------------------------------------------------------------------


def test_show_instance_shape(api, module_server):
    instance_id = module_server.instance_ids[0]
    shown = assert_ok(api.call("GET", api.instance_path(instance_id), expect=None))
    assert shown["instance_id"] == instance_id
    assert shown["name"] == "kafka-1"
    assert shown["engine"] == "kafka"
    assert shown["status"] == "RUNNING"
    assert shown["type"] in ("single", "cluster")
    assert shown["charging_mode"] == 1
    assert isinstance(shown["connector_enable"], bool)
    assert isinstance(shown["connector_node_num"], int)
    assert isinstance(shown["created_at"], str) and shown["created_at"].isdigit()


def test_show_instance_unknown(api):
    assert_error(api.call("GET", api.instance_path(str(uuid.uuid4())), expect=None), 404, UNKNOWN_INSTANCE)


def test_list_instances(api, module_server, broker):
    name = f"listed {uuid.uuid4().hex[:6]}/x"
    instance_id = api.add_instance(name, broker.bootstrap, broker_num=1)

    listing = assert_ok(api.call("GET", "/instances", query=[("engine", "kafka")], expect=None))
    assert isinstance(listing["instance_num"], int)
    ids = [instance["instance_id"] for instance in listing["instances"]]
    assert len(ids) == len(set(ids))

    exact = api.call("GET", "/instances", query=[("engine", "kafka"), ("name", name), ("exact_match_name", "true")]).json()
    assert [instance["instance_id"] for instance in exact["instances"]] == [instance_id]
    assert exact["instance_num"] == 1
    assert exact["instances"][0]["name"] == name

    by_id = api.call("GET", "/instances", query=[("engine", "kafka"), ("instance_id", instance_id)]).json()
    assert [instance["instance_id"] for instance in by_id["instances"]] == [instance_id]

    # Offset paging over every instance returns each exactly once.
    total = api.call("GET", "/instances", query=[("engine", "kafka"), ("limit", 50)]).json()["instance_num"]
    seen = []
    for offset in range(0, total + 1):
        page = api.call("GET", "/instances", query=[("engine", "kafka"), ("offset", offset), ("limit", 1)]).json()
        seen += [instance["instance_id"] for instance in page["instances"]]
    assert len(seen) == total
    assert len(set(seen)) == total
    assert instance_id in seen


def test_project_isolation(module_server, broker):
    own = module_server.api
    other = ApiClient(module_server.url, module_server.other_key)
    instance_id = own.add_instance(f"private-{uuid.uuid4().hex[:6]}", broker.bootstrap, broker_num=1)

    assert_error(other.call("GET", other.instance_path(instance_id), expect=None), 404, UNKNOWN_INSTANCE)
    listed = other.call("GET", "/instances", query=[("engine", "kafka"), ("limit", 50)]).json()
    assert instance_id not in [instance["instance_id"] for instance in listed["instances"]]
    assert_error(other.create_connector(instance_id, {}, expect=None), 404, UNKNOWN_INSTANCE)

    # The other project's key on this project's path must not be let through.
    response = other.request("GET", own.v2(own.instance_path(instance_id)))
    assert response.status_code in (401, 403, 404), response.text
    assert "error_code" in response.json()
    assert_request_id(response)


# ---- authentication ---------------------------------------------------------------


def test_unsigned_request_rejected(api, module_server):
    response = api.request("GET", api.v2(api.instance_path(module_server.instance_ids[0])), signed=False)
    assert_error(response, 401, AUTH_FAILED)


def test_wrong_secret_rejected(api, module_server):
    wrong = Key(api.key.access_key, api.key.secret_key + "x", api.key.project_id)
    response = api.request("GET", api.v2(api.instance_path(module_server.instance_ids[0])), key=wrong)
    assert_error(response, 401, AUTH_FAILED)


def test_unknown_access_key_rejected(api, module_server):
    unknown = Key("AKUNKNOWN000000000000", api.key.secret_key, api.key.project_id)
    response = api.request("GET", api.v2(api.instance_path(module_server.instance_ids[0])), key=unknown)
    assert_error(response, 401, AUTH_FAILED)


def test_tampered_body_rejected(api, fresh_instance):
    path = api.v2(f"{api.instance_path(fresh_instance)}/connector")
    uri, headers = api.sign("POST", path, body=b'{"node_cnt": 2}')
    response = requests.post(f"{api.endpoint}{uri}", data=b'{"node_cnt": 3}', headers=headers, timeout=10)
    assert_error(response, 401, AUTH_FAILED)
    assert not api.show_instance(fresh_instance).get("connector_enable")


def test_stale_date_rejected(api, module_server):
    path = api.v2(api.instance_path(module_server.instance_ids[0]))
    stale = (datetime.now(timezone.utc) - timedelta(minutes=20)).strftime("%Y%m%dT%H%M%SZ")
    assert_error(api.request("GET", path, date=stale), 401, DATE_SKEW)
    future = (datetime.now(timezone.utc) + timedelta(minutes=20)).strftime("%Y%m%dT%H%M%SZ")
    assert_error(api.request("GET", path, date=future), 401, DATE_SKEW)
    recent = (datetime.now(timezone.utc) - timedelta(minutes=10)).strftime("%Y%m%dT%H%M%SZ")
    assert_ok(api.request("GET", path, date=recent))


def test_signature_with_few_signed_headers(api, module_server):
    # Terraform's Go client signs neither Host nor X-Project-Id; requests adds
    # Host and the X-Project-Id header is sent unsigned.
    path = api.v2(api.instance_path(module_server.instance_ids[0]))
    date = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    signed_headers = {
        "Accept": "application/json",
        "Content-Type": "application/json",
        "User-Agent": "weir-integration-tests",
        "X-Sdk-Date": date,
    }
    canonical, names = canonical_request("GET", path, [], signed_headers, b"")
    assert names == ["accept", "content-type", "user-agent", "x-sdk-date"]
    authorization = (
        f"SDK-HMAC-SHA256 Access={api.key.access_key}, SignedHeaders={';'.join(names)}, "
        f"Signature={signature(api.key.secret_key, date, canonical)}"
    )
    headers = dict(signed_headers, Authorization=authorization)
    headers["X-Project-Id"] = api.key.project_id
    assert_ok(requests.get(f"{api.endpoint}{path}", headers=headers, timeout=10))


# ---- general --------------------------------------------------------------------


def test_unknown_path(api):
    assert_error(api.call("GET", "/no-such-resource", expect=None), 404, "DMS.00404001")


def test_wrong_method(api, module_server):
    path = f"{api.instance_path(module_server.instance_ids[0])}/connector"
    assert_error(api.call("DELETE", path, expect=None), 405, "DMS.00405001")


def test_body_too_large(api, fresh_instance):
    body = b'{"specification": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = api.create_connector(fresh_instance, body, expect=None)
    assert_error(response, 413, MALFORMED)


def test_health_and_metrics(module_server):
    health = requests.get(f"{module_server.url}/healthz", timeout=10)
    assert health.status_code == 200
    assert health.text.strip() == "ok"
    assert_request_id(health)
    metrics = requests.get(f"{module_server.url}/metrics", timeout=10)
    assert metrics.status_code == 200
    assert "# TYPE" in metrics.text
    assert_request_id(metrics)


def test_request_ids_are_unique(api, module_server):
    path = api.instance_path(module_server.instance_ids[0])
    ids = {api.call("GET", path, expect=None).headers.get("X-Request-Id") for _ in range(5)}
    assert None not in ids
    assert len(ids) == 5

