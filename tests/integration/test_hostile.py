"""Hostile input: every request gets a 4xx with a DMS error body
({"error_code", "error_msg"}), and the server keeps serving.

Requests are signed with harness.api.sign_raw, which signs any raw path and
query, and sent with `requests`; malformed HTTP goes through raw sockets.
The server runs with small bounds (256 KiB bodies, a 2 s read timeout) so
that the limits are reached quickly.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import pytest
import requests

from harness.api import sign_raw
from harness.tasks import obs_task, sink_config
from harness.weir import WeirServer, default_config, deep_merge, new_key

MAX_BODY = 256 * 1024
READ_TIMEOUT_S = 2

MALFORMED = "DMS.00400005"
INVALID = "DMS.00400062"
WRONG_TYPE = "DMS.00400085"


@pytest.fixture(scope="module")
def server(tmp_path_factory, weir_bin, broker):
    """A server with small body and read-time bounds and a RUNNING connector."""
    key = new_key()
    overrides = {"server": {"max_body_bytes": MAX_BODY, "read_timeout_s": READ_TIMEOUT_S}}
    config = deep_merge(default_config(broker.bootstrap, key), overrides)
    weir = WeirServer(weir_bin, tmp_path_factory.mktemp("hostile"), config, key, name="weir-hostile")
    weir.start()
    weir.api.enable_connector(weir.instance_ids[0])
    yield weir
    weir.stop()


@pytest.fixture(scope="module")
def instance_id(server) -> str:
    return server.instance_ids[0]


def send(server: WeirServer, method: str, target: str, body: bytes = b"", headers: dict | None = None, sign: bool = True):
    """Send a request to `target` (raw path and query) with `body`, signed
    over exactly these bytes unless `sign` is false."""
    base = {"Host": server.listen, "Content-Type": "application/json", **(headers or {})}
    final = sign_raw(server.key, method, target, body, base) if sign else base
    return requests.request(method, server.url + target, data=body or None, headers=final, timeout=30)


def assert_dms_error(response: requests.Response, status: int, code: str | None = None) -> dict:
    where = f"{response.request.method} {response.request.path_url[:200]}"
    assert response.status_code == status, f"{where}: HTTP {response.status_code}: {response.text[:500]}"
    assert response.headers.get("Content-Type", "").startswith("application/json"), (
        f"{where}: Content-Type {response.headers.get('Content-Type')!r}: {response.text[:500]}"
    )
    body = response.json()
    assert set(body) == {"error_code", "error_msg"}, f"{where}: {body}"
    assert body["error_code"].startswith("DMS.004") or body["error_code"].startswith("APIGW."), f"{where}: {body}"
    if code is not None:
        assert body["error_code"] == code, f"{where}: {body}"
    assert body["error_msg"], f"{where}: empty error_msg"
    assert response.headers.get("X-Request-Id"), f"{where}: no X-Request-Id"
    return body


def assert_healthy(server: WeirServer) -> None:
    assert server.process.alive(), "the server process exited"
    assert requests.get(f"{server.url}/healthz", timeout=10).text == "ok"
    instance = server.api.show_instance(server.instance_ids[0])
    assert instance["status"] == "RUNNING", instance


def task_body(**changes) -> dict:
    body = obs_task("hostile-topic", sink_config("hostile-bucket", "hostile"), start_later=True)
    sink = changes.pop("sink_task", {})
    body["sink_task"].update(sink)
    body.update(changes)
    return body


def tasks_target(server: WeirServer, instance_id: str) -> str:
    return f"/v2/{server.key.project_id}/instances/{instance_id}/connector/tasks"


# ---- raw sockets --------------------------------------------------------------


def exchange(server: WeirServer, data: bytes, timeout: float = 15) -> bytes:
    """Send `data` on a new connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def parse_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def assert_raw_dms_error(raw: bytes, status: int) -> dict:
    assert raw, "the server closed the connection without a response"
    got, headers, body = parse_response(raw)
    assert got == status, raw[:500]
    assert headers.get("content-type", "").startswith("application/json"), raw[:500]
    assert int(headers["content-length"]) == len(body), raw[:500]
    parsed = json.loads(body)
    assert set(parsed) == {"error_code", "error_msg"}, parsed
    assert parsed["error_code"].startswith("DMS.004"), parsed
    assert headers.get("x-request-id"), raw[:500]
    return parsed


# ---- bodies -------------------------------------------------------------------


def test_oversized_body_is_413(server, instance_id):
    target = tasks_target(server, instance_id)
    body = json.dumps(task_body(padding="x" * MAX_BODY)).encode()
    assert_dms_error(send(server, "POST", target, body), 413, MALFORMED)
    assert_healthy(server)


def test_exact_limit_body_is_read(server, instance_id):
    target = tasks_target(server, instance_id)
    body = json.dumps(task_body(task_name="limit-task", padding="")).encode()
    body = body[:-1] + b', "pad": "' + b"x" * (MAX_BODY - len(body) - 11) + b'"}'
    assert len(body) == MAX_BODY
    response = send(server, "POST", target, body)
    assert response.status_code == 200, response.text[:500]


def test_declared_huge_length_is_413_before_the_body(server):
    """A Content-Length over the limit gets 413 at once, before the body is read."""
    request = (
        f"POST /admin/v1/instances HTTP/1.1\r\nHost: {server.listen}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {10**12}\r\n\r\n{{"
    ).encode()
    assert_raw_dms_error(exchange(server, request), 413)
    assert_healthy(server)


def test_chunked_body_over_the_limit_is_413(server):
    chunk = b"x" * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_BODY // len(chunk) + 1))
    request = (
        f"POST /admin/v1/instances HTTP/1.1\r\nHost: {server.listen}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode() + chunks + b"0\r\n\r\n"
    assert_raw_dms_error(exchange(server, request), 413)
    assert_healthy(server)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 100_000, id="100000-brackets"),
        pytest.param(b'{"a":' * 50_000, id="50000-objects"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, id="100000-balanced"),
    ],
)
def test_deeply_nested_json_is_400(server, instance_id, body):
    assert_dms_error(send(server, "POST", tasks_target(server, instance_id), body), 400, MALFORMED)
    assert_healthy(server)


def test_nesting_inside_a_field_is_400(server, instance_id):
    nested = "[" * 200 + "]" * 200
    body = json.dumps(task_body()).replace('"hostile-bucket"', nested, 1).encode()
    assert_dms_error(send(server, "POST", tasks_target(server, instance_id), body), 400, MALFORMED)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"task_name": "\xff\xfe"}', id="invalid-bytes"),
        pytest.param(b'{"task_name": "\xc0\xaf"}', id="overlong"),
        pytest.param(b'{"task_name": "\xed\xa0\x80"}', id="surrogate"),
        pytest.param(b'{"task_name": "\\ud800"}', id="escaped-lone-surrogate"),
        pytest.param(b"\xef\xbb\xbf{}", id="byte-order-mark"),
    ],
)
def test_invalid_utf8_body_is_400(server, instance_id, body):
    assert_dms_error(send(server, "POST", tasks_target(server, instance_id), body), 400, MALFORMED)


@pytest.mark.parametrize(
    "value, code",
    [
        ("1e400", MALFORMED),
        ("-1e400", MALFORMED),
        (str(2**64), INVALID),
        (str(2**63), INVALID),
        (str(-(2**63) - 1), INVALID),
        ("1e20", INVALID),
        ("2.5", INVALID),
        ('"1e400"', INVALID),
        ('"18446744073709551616"', INVALID),
        ('"0x10"', INVALID),
        ("true", WRONG_TYPE),
    ],
)
def test_huge_node_count_is_400(server, value, code):
    fresh = server.api.add_instance(f"n-{uuid.uuid4().hex[:6]}", "127.0.0.1:9092", broker_num=1)
    target = f"/v2/{server.key.project_id}/instances/{fresh}/connector"
    body = f'{{"node_cnt": {value}}}'.encode()
    assert_dms_error(send(server, "POST", target, body), 400, code)
    assert server.api.show_instance(fresh)["connector_enable"] is False


@pytest.mark.parametrize("value", ["1e400", str(2**64), "-1", '"9" ', "1.0e3"])
def test_huge_sink_numbers_are_400(server, instance_id, value):
    body = json.dumps(task_body()).replace('"deliver_time_interval": 30', f'"deliver_time_interval": {value}').encode()
    assert b"deliver_time_interval" in body
    response = send(server, "POST", tasks_target(server, instance_id), body)
    assert_dms_error(response, 400)


# ---- path and query parameters -------------------------------------------------


@pytest.mark.parametrize("segment", ["%FF", "%C0%AF", "%ED%A0%80", "a%FFb", "%F0%28%8C%28"])
def test_invalid_utf8_path_parameter_is_400(server, segment):
    target = f"/v2/{server.key.project_id}/instances/{segment}"
    body = assert_dms_error(send(server, "GET", target), 400, INVALID)
    assert "instance_id" in body["error_msg"], body


def test_invalid_utf8_in_every_path_parameter(server, instance_id):
    project = server.key.project_id
    for target in [
        f"/v2/%FF/instances",
        f"/v2/{project}/instances/{instance_id}/connector/tasks/%FF",
        f"/v2/{project}/instances/{instance_id}/tasks/%FF/progress",
        "/admin/v1/instances/%FF/connector/node-token",
    ]:
        assert_dms_error(send(server, "GET", target), 400, INVALID)


def test_invalid_utf8_node_path_parameter_is_400(server):
    response = requests.post(
        f"{server.url}/internal/v1/connectors/%FF/nodes",
        data=b'{"pid": 1, "host": "h", "version": "v"}',
        headers={"Content-Type": "application/json", "Authorization": "Bearer x"},
        timeout=10,
    )
    assert_dms_error(response, 400, INVALID)


def test_raw_non_ascii_request_target_is_400(server):
    request = f"GET /v2/p/instances/\xff HTTP/1.1\r\nHost: {server.listen}\r\n\r\n".encode("latin-1")
    assert_raw_dms_error(exchange(server, request), 400)
    assert_healthy(server)


@pytest.mark.parametrize("name", ["offset", "limit"])
@pytest.mark.parametrize("value", ["-1", "abc", "1e3", "9223372036854775808", "-9223372036854775809", "%FF", "1.5", "0x10", "%00"])
def test_bad_task_paging_is_400(server, instance_id, name, value):
    target = f"{tasks_target(server, instance_id)}?{name}={value}"
    body = assert_dms_error(send(server, "GET", target), 400, INVALID)
    assert name in body["error_msg"], body


@pytest.mark.parametrize(
    "query",
    ["start=0", "start=-5", "start=x", "limit=0", "limit=101", "limit=-1", "begin_time=2024", "end_time=202401010000000", "begin_time=%FF"],
)
def test_bad_background_task_paging_is_400(server, instance_id, query):
    target = f"/v2/{server.key.project_id}/instances/{instance_id}/tasks?{query}"
    assert_dms_error(send(server, "GET", target), 400, INVALID)


@pytest.mark.parametrize("query", ["engine=kafka&offset=-1", "engine=kafka&limit=51", "engine=kafka&limit=", "engine=%FF", "limit=10"])
def test_bad_instance_listing_is_400(server, query):
    target = f"/v2/{server.key.project_id}/instances?{query}"
    response = send(server, "GET", target)
    if query == "engine=kafka&limit=":
        # An empty value counts as absent, as the SDK never sends one.
        assert response.status_code == 200, response.text
        return
    assert_dms_error(response, 400, INVALID)


# ---- obs_path, bucket and topic names ----------------------------------------


@pytest.mark.parametrize(
    "obs_path",
    ["../escape", "a/../../b", "..", "./a", "a/./b", "/etc", "//etc", "a\x00b", "a\\b", "%2e%2e/x", "a/\u2024\u2024/b", "x" * 257],
)
def test_obs_path_traversal_is_400(server, instance_id, obs_path):
    body = json.dumps(task_body(sink_task={"obs_path": obs_path})).encode()
    result = assert_dms_error(send(server, "POST", tasks_target(server, instance_id), body), 400, INVALID)
    assert "obs_path" in result["error_msg"], result


@pytest.mark.parametrize("bucket", ["..", "../x", "a/b", "a..b", "a\x00b", "/abs", "A" * 3])
def test_bucket_traversal_is_400(server, instance_id, bucket):
    body = json.dumps(task_body(sink_task={"obs_bucket_name": bucket})).encode()
    result = assert_dms_error(send(server, "POST", tasks_target(server, instance_id), body), 400, INVALID)
    assert "obs_bucket_name" in result["error_msg"], result


@pytest.mark.parametrize("topics", ["../etc", "a/b", "..", ".", "a\x00b", "ok,../x", ",", "x" * 250, "t\u0131"])
def test_topic_traversal_is_400(server, instance_id, topics):
    body = json.dumps(task_body(topics=topics)).encode()
    result = assert_dms_error(send(server, "POST", tasks_target(server, instance_id), body), 400, INVALID)
    assert "topic" in result["error_msg"], result


# ---- topics_regex -------------------------------------------------------------


@pytest.mark.parametrize("regex", ["(a+)+$", "(a*)*b", "(x+x+)+y", "((ab)*)*", "(a{1,9})+", "^(([a-z])+.)+[A-Z]([a-z])+$", "(.*a){12}"])
def test_catastrophic_regex_is_400(server, instance_id, regex):
    body = task_body(topics_regex=regex)
    del body["topics"]
    response = send(server, "POST", tasks_target(server, instance_id), json.dumps(body).encode())
    result = assert_dms_error(response, 400, INVALID)
    assert "topics_regex" in result["error_msg"], result


@pytest.mark.parametrize("regex", ["a{1000}{1000}", "(" * 300 + "a" + ")" * 300, "[", "x" * 256])
def test_oversized_or_broken_regex_is_400(server, instance_id, regex):
    body = task_body(topics_regex=regex)
    del body["topics"]
    response = send(server, "POST", tasks_target(server, instance_id), json.dumps(body).encode())
    assert_dms_error(response, 400, INVALID)


def test_ordinary_regex_is_accepted(server, instance_id):
    body = task_body(topics_regex="orders-[0-9]+", task_name=f"regex-{uuid.uuid4().hex[:6]}")
    del body["topics"]
    response = send(server, "POST", tasks_target(server, instance_id), json.dumps(body).encode())
    assert response.status_code == 200, response.text
    assert response.json()["topics_regex"] == "orders-[0-9]+"


# ---- headers ------------------------------------------------------------------


def test_headers_without_values(server, instance_id):
    """Headers with empty values are valid HTTP; unsigned they are ignored."""
    target = f"/v2/{server.key.project_id}/instances/{instance_id}"
    response = send(server, "GET", target, headers={"X-Empty": "", "X-Request-Id": ""})
    assert response.status_code == 200, response.text
    assert response.headers["X-Request-Id"], "an empty X-Request-Id is replaced"


@pytest.mark.parametrize("name", ["Authorization", "X-Sdk-Date"])
def test_empty_signature_headers_are_401(server, instance_id, name):
    target = f"/v2/{server.key.project_id}/instances/{instance_id}"
    headers = sign_raw(server.key, "GET", target, b"", {"Host": server.listen, "Content-Type": "application/json"})
    headers[name] = ""
    response = requests.get(server.url + target, headers=headers, timeout=10)
    assert_dms_error(response, 401)


def test_empty_signed_header_is_verified(server, instance_id):
    """An empty Content-Type can be signed like any other value."""
    target = f"/v2/{server.key.project_id}/instances/{instance_id}"
    response = send(server, "GET", target, headers={"Content-Type": ""})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "header_line",
    [
        pytest.param(b"X-No-Colon", id="no-colon"),
        pytest.param(b": no-name", id="empty-name"),
        pytest.param(b"X-Space : value", id="space-before-colon"),
        pytest.param(b"X-Nul: a\x00b", id="nul-in-value"),
        pytest.param(b"X-Bad\x01Name: v", id="control-in-name"),
        pytest.param(b" folded", id="obsolete-line-folding"),
    ],
)
def test_malformed_header_lines_are_400(server, header_line):
    request = b"GET /healthz HTTP/1.1\r\nHost: " + server.listen.encode() + b"\r\n" + header_line + b"\r\n\r\n"
    assert_raw_dms_error(exchange(server, request), 400)
    assert_healthy(server)


def test_too_many_headers_are_431(server):
    headers = b"".join(b"X-H%d: v\r\n" % index for index in range(200))
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
    assert_raw_dms_error(exchange(server, request), 431)
    assert_healthy(server)


def test_huge_header_is_431(server):
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 1_000_000 + b"\r\n\r\n"
    assert_raw_dms_error(exchange(server, request), 431)
    assert_healthy(server)


@pytest.mark.parametrize(
    "request_line",
    [
        pytest.param(b"GARBAGE", id="garbage"),
        pytest.param(b"GET /healthz HTTP/9.9", id="unknown-version"),
        pytest.param(b"GET  /healthz HTTP/1.1", id="double-space"),
        pytest.param(b"G\x00T /healthz HTTP/1.1", id="nul-in-method"),
    ],
)
def test_malformed_request_lines_get_a_dms_error(server, request_line):
    raw = exchange(server, request_line + b"\r\nHost: x\r\n\r\n")
    assert_raw_dms_error(raw, 400)
    assert_healthy(server)


def test_encoded_dot_segments_in_the_url_are_404(server):
    request = f"GET /v2/%2e%2e/admin/v1/instances HTTP/1.1\r\nHost: {server.listen}\r\nConnection: close\r\n\r\n"
    raw = exchange(server, request.encode())
    assert parse_response(raw)[0] == 404, raw[:500]
    assert json.loads(parse_response(raw)[2])["error_code"] == "DMS.00404001"


# ---- slow clients -------------------------------------------------------------


def test_slow_headers_close_the_connection(server):
    """A client that sends its headers a byte at a time is cut off after the
    read timeout, long before it would finish."""
    line = b"X-Slow: " + b"a" * 60 + b"\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        closed_after = None
        for byte in line * 10:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed_after = time.monotonic() - started
                break
            time.sleep(0.1)
            # A closed connection shows as readable with nothing to read.
            sock.setblocking(False)
            try:
                data = sock.recv(1024)
            except BlockingIOError:
                data = None
            except ConnectionResetError:
                data = b""
            finally:
                sock.setblocking(True)
            if data is not None:
                assert data == b"", f"the server answered a request it never received: {data[:200]!r}"
                closed_after = time.monotonic() - started
                break
    # Sending every byte takes 68 s, far beyond the read timeout.
    assert closed_after is not None, "the server kept a connection with unfinished headers open"
    print(f"connection closed after {closed_after:.1f} s")
    assert_healthy(server)


def test_slow_body_is_408(server):
    headers = (
        f"POST /admin/v1/instances HTTP/1.1\r\nHost: {server.listen}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(headers)
        response = b""
        for _ in range(100):
            try:
                sock.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.2)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            response += chunk
            if not chunk or b"}" in chunk:
                break
    assert_raw_dms_error(response, 408)
    assert_healthy(server)


def test_many_slow_clients_do_not_block_others(server):
    """While 100 connections stall in their headers, the API still responds,
    and the stalled connections are closed."""
    sockets = []
    for _ in range(100):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        sockets.append(sock)
    try:
        assert_healthy(server)
        closed = threading.Event()

        def wait_closed():
            for sock in sockets:
                sock.settimeout(READ_TIMEOUT_S * 10)
                try:
                    assert sock.recv(1024) == b""
                except ConnectionResetError:
                    pass
            closed.set()

        waiter = threading.Thread(target=wait_closed, daemon=True)
        waiter.start()
        waiter.join(timeout=READ_TIMEOUT_S * 10 + 5)
        assert closed.is_set(), "stalled connections were not closed"
    finally:
        for sock in sockets:
            sock.close()
    assert_healthy(server)


def test_server_survives_everything(server, instance_id):
    assert_healthy(server)
    listed = server.api.list_tasks(instance_id)
    assert listed["total_number"] >= 1
