"""Compatibility with the official Python SDK (huaweicloudsdkkafka 3.1.219):
its requests are accepted and its response models parse.

The client is built with an endpoint and a project id and without a region,
so the SDK never contacts IAM or a real endpoint.
"""

from __future__ import annotations

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkkafka.v2 import KafkaClient
from huaweicloudsdkkafka.v2.model import (
    CreateConnectorReq,
    CreateConnectorRequest,
    CreateConnectorTaskRequest,
    CreateSmartConnectTaskReq,
    DeleteConnectorRequest,
    DeleteConnectorTaskRequest,
    ListBackgroundTasksRequest,
    ListConnectorTasksRequest,
    PauseConnectorTaskRequest,
    RestartConnectorTaskRequest,
    RestartSmartConnectorTaskRequest,
    ResumeConnectorTaskRequest,
    ShowBackgroundTaskRequest,
    ShowConnectorTaskRequest,
    ShowInstanceRequest,
    SmartConnectTaskReqSinkConfig,
)

from harness.tasks import task_name


@pytest.fixture(scope="module")
def sdk(module_server):
    key = module_server.key
    config = HttpConfig.get_default_config()
    config.retry_times = 0
    return (
        KafkaClient.new_builder()
        .with_http_config(config)
        .with_credentials(BasicCredentials(key.access_key, key.secret_key, key.project_id))
        .with_endpoint(module_server.url)
        .build()
    )


def test_sdk_connector_and_task_flow(sdk, module_server, broker):
    instance_id = module_server.api.add_instance(task_name("sdk"), broker.bootstrap, broker_num=1)

    created = sdk.create_connector(CreateConnectorRequest(instance_id=instance_id, body=CreateConnectorReq(node_cnt=2)))
    assert created.status_code == 200
    assert created.job_id
    assert created.connector_id
    module_server.api.wait_instance_status(instance_id, "RUNNING")
    shown = sdk.show_instance(ShowInstanceRequest(instance_id=instance_id))
    assert shown.connector_id == created.connector_id
    assert shown.connector_node_num == 2

    job = sdk.show_background_task(ShowBackgroundTaskRequest(instance_id=instance_id, task_id=created.job_id))
    assert job.task_count == "1"
    assert job.tasks[0].id == created.job_id
    jobs = sdk.list_background_tasks(ListBackgroundTasksRequest(instance_id=instance_id, start=1, limit=10))
    assert created.job_id in [item.id for item in jobs.tasks]

    topic = broker.unique_topic("sdk")
    broker.create_topic(topic, 1)
    sink = SmartConnectTaskReqSinkConfig(
        consumer_strategy="earliest",
        destination_file_type="TEXT",
        deliver_time_interval=30,
        access_key="ak",
        secret_key="sk",
        obs_bucket_name="sdk-bucket",
        obs_path="sdk",
        partition_format="yyyy/MM/dd",
        record_delimiter="\n",
        store_keys=False,
    )
    body = CreateSmartConnectTaskReq(
        task_name=task_name("sdk"), start_later=True, topics=topic, source_type="NONE", sink_type="OBS_SINK", sink_task=sink
    )
    task = sdk.create_connector_task(CreateConnectorTaskRequest(instance_id=instance_id, body=body))
    assert task.id
    assert task.topics == topic
    assert task.sink_task.obs_bucket_name == "sdk-bucket"

    listed = sdk.list_connector_tasks(ListConnectorTasksRequest(instance_id=instance_id, offset=0, limit=10))
    assert [item.id for item in listed.tasks] == [task.id]
    assert listed.total_number == 1

    actions = [
        (sdk.restart_connector_task, RestartConnectorTaskRequest, "RUNNING"),
        (sdk.pause_connector_task, PauseConnectorTaskRequest, "PAUSED"),
        (sdk.resume_connector_task, ResumeConnectorTaskRequest, "RUNNING"),
        (sdk.restart_smart_connector_task, RestartSmartConnectorTaskRequest, "RUNNING"),
    ]
    for method, request_type, status in actions:
        response = method(request_type(instance_id=instance_id, task_id=task.id))
        assert response.status_code == 204, request_type.__name__
        module_server.api.wait_task_status(instance_id, task.id, status)

    assert sdk.delete_connector_task(DeleteConnectorTaskRequest(instance_id=instance_id, task_id=task.id)).status_code == 204
    with pytest.raises(ClientRequestException) as raised:
        sdk.show_connector_task(ShowConnectorTaskRequest(instance_id=instance_id, task_id=task.id))
    assert raised.value.status_code == 404
    assert raised.value.error_code == "DMS.00404026"
    assert raised.value.request_id

    deleted = sdk.delete_connector(DeleteConnectorRequest(instance_id=instance_id))
    assert deleted.status_code == 200
    assert deleted.job_id
    module_server.api.wait_job_status(instance_id, deleted.job_id, "SUCCESS")


def test_sdk_error_parsing(sdk, module_server):
    with pytest.raises(ClientRequestException) as raised:
        sdk.show_instance(ShowInstanceRequest(instance_id="00000000-0000-0000-0000-000000000000"))
    assert raised.value.status_code == 404
    assert raised.value.error_code == "DMS.00404022"
    assert raised.value.error_msg
    assert raised.value.request_id
