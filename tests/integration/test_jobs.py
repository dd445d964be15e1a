"""Background jobs of CreateConnector and DeleteConnector, seen through
ShowInstance and ShowBackgroundTask, including a server killed mid-job.

Servers with `nodes.spawn = false` keep a CreateConnector job EXECUTING until
node_cnt nodes have registered, which the tests then start by hand with the
node token. That makes the EXTENDING phase as long as the test needs.
"""

from __future__ import annotations

import signal
import time

import pytest

from harness.checks import assert_error, observe_states
from harness.procs import pid_alive, wait_until
from harness.tasks import obs_task, sink_config

MANUAL_NODES = {"nodes": {"spawn": False}}
BUSY = "DMS.00400026"


def job_status(api, instance_id: str, job_id: str) -> str:
    return api.show_job(instance_id, job_id)["tasks"][0]["status"]


def assert_stays(fetch, expected: object, seconds: float) -> None:
    """Check that fetch() returns `expected` on every poll for `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = fetch()
        assert state == expected, f"expected {expected} throughout, got {state}"
        time.sleep(0.2)


def start_manual_nodes(server, instance_id: str, count: int, log_dir) -> list:
    token = server.api.node_token(instance_id)
    return [
        server.start_node(token["connector_id"], token["token"], log_dir, node_id=f"manual-{index}")
        for index in range(count)
    ]


def observe_job(api, instance_id: str, job_id: str, timeout: float) -> tuple[list[str], list[str]]:
    """Poll ShowInstance and ShowBackgroundTask together until RUNNING and
    SUCCESS; return the distinct instance and job states seen, in order."""
    instance_states: list[str] = []
    job_states: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        for states, state in (
            (instance_states, api.show_instance(instance_id)["status"]),
            (job_states, job_status(api, instance_id, job_id)),
        ):
            if not states or states[-1] != state:
                states.append(state)
        if instance_states[-1] == "RUNNING" and job_states[-1] in ("SUCCESS", "FAILED"):
            return instance_states, job_states
        if time.monotonic() > deadline:
            raise AssertionError(f"job not done after {timeout:.0f} s: instance {instance_states}, job {job_states}")
        time.sleep(0.05)


def test_create_connector_job_states(weir_server):
    server = weir_server()
    api = server.api
    instance_id = server.instance_ids[0]

    created = api.create_connector(instance_id, {"node_cnt": 2}).json()
    instance_states, job_states = observe_job(api, instance_id, created["job_id"], timeout=120)

    assert instance_states == ["EXTENDING", "RUNNING"], instance_states
    assert job_states[0] in ("CREATED", "EXECUTING"), job_states
    assert set(job_states) <= {"CREATED", "EXECUTING", "SUCCESS"}, job_states
    assert job_states[-1] == "SUCCESS"
    shown = api.show_instance(instance_id)
    assert shown["connector_id"] == created["connector_id"]
    assert shown["connector_node_num"] == 2
    server.wait_node_count(2)


def test_job_waits_for_nodes(weir_server, tmp_path):
    server = weir_server(MANUAL_NODES)
    api = server.api
    instance_id = server.instance_ids[0]

    created = api.create_connector(instance_id, {"node_cnt": 2}).json()
    job_id = created["job_id"]
    assert_stays(lambda: api.show_instance(instance_id)["status"], "EXTENDING", 3)
    assert job_status(api, instance_id, job_id) == "EXECUTING"
    listed = api.list_jobs(instance_id, [("start", 1), ("limit", 10)])
    assert [job["status"] for job in listed["tasks"] if job["id"] == job_id] == ["EXECUTING"]

    start_manual_nodes(server, instance_id, 2, tmp_path)
    api.wait_instance_status(instance_id, "RUNNING", timeout=120)
    api.wait_job_status(instance_id, job_id, "SUCCESS", timeout=30)
    assert api.show_instance(instance_id)["connector_node_num"] == 2


def test_requests_rejected_while_extending(weir_server, tmp_path, broker):
    server = weir_server(MANUAL_NODES)
    api = server.api
    instance_id = server.instance_ids[0]
    job_id = api.create_connector(instance_id, {"node_cnt": 2}).json()["job_id"]
    api.wait_instance_status(instance_id, "EXTENDING", timeout=10)

    assert_error(api.create_connector(instance_id, {"node_cnt": 2}, expect=None), 400, BUSY)
    assert_error(api.delete_connector(instance_id, None, expect=None), 400, BUSY)
    task = obs_task("some-topic", sink_config("bucket", "path"), start_later=True)
    assert_error(api.create_task(instance_id, task, expect=None), 400, BUSY)
    path = f"{api.instance_path(instance_id)}/tasks/{job_id}"
    assert_error(api.call("DELETE", path, expect=None), 400, "DMS.00400017")

    start_manual_nodes(server, instance_id, 2, tmp_path)
    api.wait_instance_status(instance_id, "RUNNING", timeout=120)
    api.create_task(instance_id, task)


@pytest.mark.faults
def test_job_resumes_after_server_kill(weir_server, tmp_path):
    server = weir_server(MANUAL_NODES)
    api = server.api
    instance_id = server.instance_ids[0]
    created = api.create_connector(instance_id, {"node_cnt": 2}).json()
    job_id = created["job_id"]
    assert_stays(lambda: job_status(api, instance_id, job_id), "EXECUTING", 2)

    server.kill9()
    server.restart()

    assert api.show_instance(instance_id)["status"] == "EXTENDING"
    assert job_status(api, instance_id, job_id) == "EXECUTING"
    start_manual_nodes(server, instance_id, 2, tmp_path)
    api.wait_job_status(instance_id, job_id, "SUCCESS", timeout=120)
    shown = api.wait_instance_status(instance_id, "RUNNING", timeout=30)
    assert shown["connector_id"] == created["connector_id"]
    assert shown["connector_node_num"] == 2


@pytest.mark.faults
def test_spawning_job_survives_server_kill(weir_server):
    server = weir_server()
    api = server.api
    instance_id = server.instance_ids[0]
    created = api.create_connector(instance_id, {"node_cnt": 2}).json()
    # Kill at once, while the job is most likely still starting nodes.
    server.kill9()
    server.restart()

    api.wait_job_status(instance_id, created["job_id"], "SUCCESS", timeout=120)
    shown = api.wait_instance_status(instance_id, "RUNNING", timeout=30)
    assert shown["connector_id"] == created["connector_id"]
    assert shown["connector_node_num"] == 2
    # Nodes of the killed server must not pile up on top of the new ones.
    server.wait_node_count(2, timeout=60)
    time.sleep(5)
    assert len(server.node_pids()) == 2, server.node_pids()


@pytest.mark.faults
def test_server_stop_stops_nodes_it_adopted(weir_server):
    """Nodes that outlive a server crash are adopted by the next server, and
    a clean stop of that server stops them as it stops its own children."""
    server = weir_server()
    api = server.api
    instance_id = server.instance_ids[0]
    api.enable_connector(instance_id, {"node_cnt": 2})
    old_pids = sorted(server.wait_node_count(2))

    server.kill9()
    server.restart()
    api.wait_instance_status(instance_id, "RUNNING", timeout=60)
    assert_stays(lambda: sorted(server.node_pids()), old_pids, 5)

    server.process.signal(signal.SIGTERM)
    server.process.popen.wait(timeout=60)
    wait_until(
        lambda: not any(pid_alive(pid) for pid in old_pids),
        timeout=30,
        message=lambda: f"adopted nodes {old_pids} to exit after the server's SIGTERM",
    )


def test_delete_connector_job_states(weir_server):
    server = weir_server()
    api = server.api
    instance_id = server.instance_ids[0]
    api.enable_connector(instance_id, {"node_cnt": 2})
    server.wait_node_count(2)

    deleted = api.delete_connector(instance_id).json()
    states = observe_states(lambda: api.show_instance(instance_id)["status"], "RUNNING", timeout=120)
    assert states in (["CONNECTOR_DELETING", "RUNNING"], ["RUNNING"]), states
    api.wait_job_status(instance_id, deleted["job_id"], "SUCCESS", timeout=60)
    shown = api.show_instance(instance_id)
    assert shown["connector_enable"] is False
    assert not shown.get("connector_id")
    server.wait_node_count(0, timeout=60)

    # Smart Connect can be enabled again after it was disabled.
    again = api.enable_connector(instance_id, {"node_cnt": 2})
    assert again["connector_node_num"] == 2
