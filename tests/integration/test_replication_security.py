"""Replication from peers that require SASL SCRAM-SHA-512, over plaintext
and over TLS, and connector/validate's verdicts on good and bad settings.

SASL PLAIN is built the same way as SCRAM (librdkafka's sasl.mechanism) but
is not tested: tansu 0.6.0 has no PLAIN mechanism."""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from harness.kafka import TansuBroker
from harness.procs import free_port, wait_until
from harness.replication import wait_for_values
from harness.tasks import task_name
from harness.tls import TlsProxy, make_ca

USER = "alice"
PASSWORD = "scram-" + uuid.uuid4().hex[:12]


def scram_config(bootstrap: str, password: str = PASSWORD, ca=None) -> dict:
    config = {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_SSL" if ca else "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": USER,
        "sasl.password": password,
    }
    if ca:
        config["ssl.ca.location"] = str(ca)
    return config


def scram_broker(tansu_bin, work_dir, advertised_port=None, ready_config=None) -> TansuBroker:
    """Start a broker that requires SCRAM-SHA-512 for USER.

    The user is created on the broker started without authentication, then
    the broker starts again with --authentication on the same store."""
    store = work_dir / "scram.db"
    plain = TansuBroker(tansu_bin, work_dir, storage=store).start()
    subprocess.run(
        [str(tansu_bin), "user", "create", "--broker", f"tcp://{plain.bootstrap}", "--mechanism", "scram512", USER, PASSWORD],
        check=True,
        capture_output=True,
        timeout=60,
    )
    plain.stop()
    return TansuBroker(
        tansu_bin,
        work_dir,
        storage=store,
        extra_args=["--authentication"],
        advertised_port=advertised_port,
        client_config=ready_config,
        port=plain.port,
    )


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def scram_peer(tmp_path_factory, tansu_bin):
    broker = scram_broker(tansu_bin, tmp_path_factory.mktemp("scram"))
    broker.client_config = scram_config(broker.bootstrap)
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def tls_peer(tmp_path_factory, tansu_bin, certificates):
    """A SCRAM broker reachable only through a TLS proxy, whose port the
    broker advertises. `tls_bootstrap` is the proxy's address."""
    ca, cert, key = certificates
    tls_port = free_port()
    broker = scram_broker(tansu_bin, tmp_path_factory.mktemp("scram-tls"), advertised_port=tls_port)
    proxy = TlsProxy(broker.port, cert, key, port=tls_port).start()
    broker.tls_bootstrap = f"127.0.0.1:{tls_port}"
    broker.client_config = scram_config(broker.tls_bootstrap, ca=ca)
    broker.start(ready_bootstrap=broker.tls_bootstrap)
    yield broker
    proxy.stop()
    broker.stop()


@pytest.fixture(scope="module")
def secure_server(tmp_path_factory, weir_bin, broker, certificates):
    """A server whose nodes trust the test CA, with one connector."""
    from conftest import _servers, _start_server

    ca, _cert, _key = certificates
    overrides = {"nodes": {"topic_refresh_interval_ms": 1000, "kafka": {"fetch.wait.max.ms": "10", "ssl.ca.location": str(ca)}}}
    server = _start_server(weir_bin, tmp_path_factory.mktemp("weir-sasl"), broker.bootstrap, overrides, 1, "weir-sasl")
    server.api.enable_connector(server.instance_ids[0])
    yield server
    server.stop()
    _servers.remove(server)


def scram_source(bootstrap: str, password: str = PASSWORD, protocol: str = "SASL_PLAINTEXT") -> dict:
    return {
        "bootstrap_servers": bootstrap,
        "security_protocol": protocol,
        "sasl_mechanism": "SCRAM-SHA-512",
        "user_name": USER,
        "password": password,
        "consumer_strategy": "earliest",
    }


def validate(server, source: dict):
    path = f"{server.api.instance_path(server.instance_ids[0])}/connector/validate"
    return server.api.call("POST", path, expect=None, body={"type": "KAFKA_REPLICATOR_SOURCE", "task": source})


def replicate(server, broker, bootstrap_for_producer: str, producer_config: dict, source: dict) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"sasl-{uuid.uuid4().hex[:6]}"
    admin = AdminClient(producer_config)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(30)
    producer = Producer({**producer_config, "enable.idempotence": True})
    values = [f"s-{index}".encode() for index in range(100)]
    for index, value in enumerate(values):
        producer.produce(topic, value=value, partition=index % 2)
    assert producer.flush(60) == 0
    body = {
        "task_name": task_name("sasl"),
        "topics": topic,
        "source_type": "KAFKA_REPLICATOR_SOURCE",
        "source_task": source,
        "sink_type": "NONE",
    }
    instance_id = server.instance_ids[0]
    created = server.api.create_task(instance_id, body).json()
    assert "password" not in created["source_task"]
    assert created["source_task"]["user_name"] == USER
    server.api.wait_task_status(instance_id, created["id"], "RUNNING")
    copied = wait_for_values(broker.bootstrap, topic, set(values))
    assert len(copied) == 100
    shown = server.api.show_task(instance_id, created["id"])
    assert PASSWORD not in str(shown)


def test_validate_accepts_right_scram_password(secure_server, scram_peer):
    response = validate(secure_server, scram_source(scram_peer.bootstrap))
    assert response.status_code == 200, response.text
    assert response.json() == {}


def test_validate_rejects_wrong_scram_password(secure_server, scram_peer):
    response = validate(secure_server, scram_source(scram_peer.bootstrap, password="wrong-password"))
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "WEIR.00400102", response.text
    assert "wrong-password" not in response.text


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"])
def test_validate_reports_unreachable_peer(secure_server, protocol):
    """A closed port is unreachable whatever the protocol: the `sasl_ssl://`
    prefix of librdkafka's messages names no authentication or TLS failure."""
    bootstrap = f"127.0.0.1:{free_port()}"
    source = {"bootstrap_servers": bootstrap} if protocol == "PLAINTEXT" else scram_source(bootstrap, protocol=protocol)
    response = validate(secure_server, source)
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "WEIR.00400101", response.text


def test_validate_reports_tls_failure(secure_server, tls_peer, tmp_path):
    """A proxy whose certificate comes from a CA the nodes do not trust fails
    the TLS handshake."""
    _ca, cert, key = make_ca(tmp_path / "untrusted")
    proxy = TlsProxy(tls_peer.port, cert, key).start()
    try:
        response = validate(secure_server, scram_source(f"127.0.0.1:{proxy.port}", protocol="SASL_SSL"))
    finally:
        proxy.stop()
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "WEIR.00400103", response.text


def test_validate_over_tls(secure_server, tls_peer):
    response = validate(secure_server, scram_source(tls_peer.tls_bootstrap, protocol="SASL_SSL"))
    assert response.status_code == 200, response.text


def test_validate_needs_type(secure_server):
    path = f"{secure_server.api.instance_path(secure_server.instance_ids[0])}/connector/validate"
    response = secure_server.api.call("POST", path, expect=None, body={"task": {}})
    assert response.status_code == 400
    assert "type" in response.json()["error_msg"]


def test_replication_over_scram_plaintext(secure_server, broker, scram_peer):
    replicate(secure_server, broker, scram_peer.bootstrap, scram_config(scram_peer.bootstrap), scram_source(scram_peer.bootstrap))


def test_replication_over_scram_tls(secure_server, broker, tls_peer, certificates):
    ca, _cert, _key = certificates
    replicate(
        secure_server,
        broker,
        tls_peer.tls_bootstrap,
        scram_config(tls_peer.tls_bootstrap, ca=ca),
        scram_source(tls_peer.tls_bootstrap, protocol="SASL_SSL"),
    )


def test_task_with_rejected_password_shows_the_authentication_error(secure_server, scram_peer):
    """A running task whose peer rejects its password turns FAILING, and its
    error names the SASL failure rather than a bare metadata timeout."""
    api = secure_server.api
    instance_id = secure_server.instance_ids[0]
    body = {
        "task_name": task_name("sasl-wrong"),
        "topics": f"sasl-wrong-{uuid.uuid4().hex[:6]}",
        "source_type": "KAFKA_REPLICATOR_SOURCE",
        "source_task": scram_source(scram_peer.bootstrap, password="wrong-password"),
        "sink_type": "NONE",
    }
    created = api.create_task(instance_id, body).json()

    def failing() -> dict | None:
        shown = api.show_task(instance_id, created["id"])
        return shown if shown.get("health") == "FAILING" and shown.get("error_msg") else None

    shown = wait_until(failing, timeout=120, message="the task to show FAILING with an error_msg")
    assert "authentication" in shown["error_msg"].lower(), shown["error_msg"]
    assert "wrong-password" not in str(shown)
    # It stays FAILING across the node's restarts of the runner.
    for _ in range(20):
        shown = api.show_task(instance_id, created["id"])
        assert shown["health"] == "FAILING", shown
        time.sleep(0.5)
    api.delete_task(instance_id, created["id"])


def test_validate_reports_tls_client_on_plaintext_port(secure_server, scram_peer):
    """A TLS client that reaches a plaintext listener fails its handshake,
    which validate reports as a TLS failure, not as an unreachable peer."""
    response = validate(secure_server, scram_source(scram_peer.bootstrap, protocol="SASL_SSL"))
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "WEIR.00400103", response.text
