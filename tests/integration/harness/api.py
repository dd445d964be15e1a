"""Signed HTTP client for the Weir API.

Requests are signed with SDK-HMAC-SHA256 by the official SDK's own signer
(huaweicloudsdkcore.signer.signer.Signer, 3.1.219) and sent with `requests`,
so a test controls the exact body bytes and headers that go on the wire.
canonical_request() is an independent implementation of the same algorithm,
used to cross-check the SDK signer against the published test vectors.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any, Iterable
from urllib.parse import quote, quote_from_bytes, unquote, unquote_to_bytes, urlsplit

import requests
import requests.auth
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
USER_AGENT = "weir-integration-tests"


def path_param(value: str) -> str:
    """Percent-encode one path parameter the way the SDK does (nothing kept)."""
    return quote(str(value), safe="")


def _encode(text: str) -> str:
    return quote(text, safe="~")


def canonical_query(params: Iterable[tuple[str, Any]]) -> str:
    """Canonical query string: sorted pairs, RFC 3986 encoding, lists repeated."""
    parts = []
    for key, value in sorted(params, key=lambda pair: (pair[0], str(pair[1]))):
        if isinstance(value, list):
            for item in sorted(value):
                parts.append(f"{_encode(key)}={_encode(str(item))}")
        elif isinstance(value, bool):
            parts.append(f"{_encode(key)}={'true' if value else 'false'}")
        else:
            parts.append(f"{_encode(key)}={_encode(str(value))}")
    return "&".join(parts)


def canonical_uri(path: str) -> str:
    """Canonical URI: decode, re-encode each segment, end with '/'."""
    encoded = "/".join(_encode(segment) for segment in unquote(path).split("/"))
    return encoded if encoded.endswith("/") else encoded + "/"


def canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, Any]],
    headers: dict[str, str],
    body: bytes,
) -> tuple[str, list[str]]:
    """Build the canonical request and the signed header names.

    Header names containing '_' are not signed, as in the SDK.
    """
    lowered = {name.lower(): str(value).strip() for name, value in headers.items()}
    signed = sorted(name for name in lowered if "_" not in name)
    header_block = "".join(f"{name}:{lowered[name]}\n" for name in signed)
    payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
    text = "\n".join(
        [
            method.upper(),
            canonical_uri(path),
            canonical_query(query),
            header_block,
            ";".join(signed),
            payload_hash,
        ]
    )
    return text, signed


def canonical_uri_of_bytes(path: str) -> str:
    """Canonical URI of a raw request path, decoded and re-encoded as bytes.

    This is what the server computes. Unlike canonical_uri() (and the SDK),
    an escape of invalid UTF-8 such as %FF stays %FF instead of becoming U+FFFD.
    """
    segments = unquote_to_bytes(path).split(b"/")
    encoded = "/".join(quote_from_bytes(segment, safe="~") for segment in segments)
    return encoded if encoded.endswith("/") else encoded + "/"


def query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """Decode a raw URL query the way the server does (Go's url.ParseQuery):
    '+' is a space, a pair without '=' has an empty value, empty pairs are
    skipped, and invalid UTF-8 becomes U+FFFD."""
    pairs = []
    for pair in raw_query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        pairs.append((unquote(key.replace("+", " ")), unquote(value.replace("+", " "))))
    return pairs


def sign_raw(
    key: Key,
    method: str,
    target: str,
    body: bytes,
    headers: dict[str, str],
    date: str | None = None,
) -> dict[str, str]:
    """Sign a request given as its raw target (path?query), for any bytes.

    Adds X-Project-Id (unless given) and X-Sdk-Date, signs every header in
    `headers` whose name has no '_', and returns the headers with
    Authorization. Unlike ApiClient.sign, which goes through the SDK, this
    signs paths and queries that the SDK cannot express.
    """
    signed_headers = dict(headers)
    signed_headers.setdefault("X-Project-Id", key.project_id)
    signed_headers["X-Sdk-Date"] = date or time.strftime(DATE_FORMAT, time.gmtime())
    path, _, raw_query = target.partition("?")
    lowered = {name.lower(): str(value).strip() for name, value in signed_headers.items()}
    names = sorted(name for name in lowered if "_" not in name)
    payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
    canonical = "\n".join(
        [
            method.upper(),
            canonical_uri_of_bytes(path),
            canonical_query(query_pairs(raw_query)),
            "".join(f"{name}:{lowered[name]}\n" for name in names),
            ";".join(names),
            payload_hash,
        ]
    )
    sig = signature(key.secret_key, signed_headers["X-Sdk-Date"], canonical)
    signed_headers["Authorization"] = (
        f"{ALGORITHM} Access={key.access_key}, SignedHeaders={';'.join(names)}, Signature={sig}"
    )
    return signed_headers


class SignedAuth(requests.auth.AuthBase):
    """requests auth that signs each prepared request as it goes on the wire.

    It signs Host, Content-Type, X-Project-Id and X-Sdk-Date over the final
    URL and body bytes, so it works for any request that a tool such as
    schemathesis generates. `count` is the number of requests signed.
    """

    def __init__(self, key: Key):
        self.key = key
        self.count = 0

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        url = urlsplit(request.url)
        target = url.path + (f"?{url.query}" if url.query else "")
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        headers = {"Host": url.netloc}
        if request.headers.get("Content-Type"):
            headers["Content-Type"] = request.headers["Content-Type"]
        signed = sign_raw(self.key, request.method or "GET", target, body, headers)
        request.headers.update(signed)
        self.count += 1
        return request


def signature(secret_key: str, date: str, canonical: str) -> str:
    """Signature = hex HMAC-SHA256(SK, string to sign); no key derivation."""
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{date}\n{digest}"
    return hmac.new(secret_key.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


@dataclass
class Key:
    """An API key (AK/SK) and the project it belongs to."""

    access_key: str
    secret_key: str
    project_id: str


class ApiError(AssertionError):
    """An API call returned a status other than the one the test expected."""


class ApiClient:
    """Send signed requests to one Weir server as one project."""

    def __init__(self, endpoint: str, key: Key, timeout: float = 30.0):
        self.endpoint = endpoint.rstrip("/")
        self.key = key
        self.timeout = timeout
        self.session = requests.Session()
        parts = urlsplit(self.endpoint)
        self.scheme = parts.scheme
        self.netloc = parts.netloc

    # ---- low level -------------------------------------------------------

    def sign(
        self,
        method: str,
        path: str,
        query: list[tuple[str, Any]] | None = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        date: str | None = None,
        key: Key | None = None,
    ) -> tuple[str, dict[str, str]]:
        """Sign a request with the SDK's Signer; return (path?query, headers)."""
        key = key or self.key
        header_params = {
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json",
            "X-Project-Id": key.project_id,
        }
        header_params.update(headers or {})
        if date is not None:
            header_params["X-Sdk-Date"] = date
        request = SdkRequest(
            method=method,
            schema=self.scheme,
            host=self.netloc,
            resource_path=path,
            query_params=list(query or []),
            header_params=header_params,
            body=body,
        )
        credentials = BasicCredentials(key.access_key, key.secret_key, key.project_id)
        signed = Signer(credentials).sign(request)
        return signed.uri, dict(signed.header_params)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | dict | list | None = None,
        query: list[tuple[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        signed: bool = True,
        date: str | None = None,
        key: Key | None = None,
    ) -> requests.Response:
        """Send one request. A dict or list body is sent as compact JSON.

        `path` is the full path (e.g. /v2/{project}/instances); `signed=False`
        sends the request with no Authorization header.
        """
        if isinstance(body, (dict, list)):
            raw = json.dumps(body).encode()
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = body or b""
        if signed:
            uri, header_params = self.sign(method, path, query, raw, headers, date, key)
        else:
            header_params = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
            header_params.update(headers or {})
            query_string = canonical_query(query or [])
            uri = f"{path}?{query_string}" if query_string else path
        return self.session.request(
            method,
            f"{self.scheme}://{self.netloc}{uri}",
            data=raw if raw else None,
            headers=header_params,
            timeout=self.timeout,
            allow_redirects=False,
        )

    def v2(self, suffix: str, project_id: str | None = None) -> str:
        return f"/v2/{path_param(project_id or self.key.project_id)}{suffix}"

    def call(self, method: str, suffix: str, expect: int | None = 200, **kwargs) -> requests.Response:
        """Send a request to /v2/{project}{suffix} and check the status if `expect` is set."""
        response = self.request(method, self.v2(suffix), **kwargs)
        if expect is not None and response.status_code != expect:
            raise ApiError(
                f"{method} {suffix}: expected HTTP {expect}, got {response.status_code}: "
                f"{response.text[:2000]}"
            )
        return response

    # ---- endpoints ---------------------------------------------------------

    def instance_path(self, instance_id: str) -> str:
        return f"/instances/{path_param(instance_id)}"

    def create_connector(self, instance_id: str, body: Any = None, **kwargs) -> requests.Response:
        return self.call("POST", f"{self.instance_path(instance_id)}/connector", body=body if body is not None else {}, **kwargs)

    def delete_connector(self, instance_id: str, body: Any = None, **kwargs) -> requests.Response:
        return self.call("POST", f"/kafka{self.instance_path(instance_id)}/delete-connector", body=body, **kwargs)

    def show_instance(self, instance_id: str, **kwargs) -> dict:
        return self.call("GET", self.instance_path(instance_id), **kwargs).json()

    def create_task(self, instance_id: str, body: Any, **kwargs) -> requests.Response:
        return self.call("POST", f"{self.instance_path(instance_id)}/connector/tasks", body=body, **kwargs)

    def task_path(self, instance_id: str, task_id: str) -> str:
        return f"{self.instance_path(instance_id)}/connector/tasks/{path_param(task_id)}"

    def show_task(self, instance_id: str, task_id: str, **kwargs) -> dict:
        return self.call("GET", self.task_path(instance_id, task_id), **kwargs).json()

    def list_tasks(self, instance_id: str, query=None, **kwargs) -> dict:
        return self.call("GET", f"{self.instance_path(instance_id)}/connector/tasks", query=query, **kwargs).json()

    def task_action(self, instance_id: str, task_id: str, action: str, **kwargs) -> requests.Response:
        """PUT pause, resume or restart; restart_kafka uses the /kafka/ path."""
        kwargs.setdefault("expect", 204)
        if action == "restart_kafka":
            path = f"/kafka{self.task_path(instance_id, task_id)}/restart"
        else:
            path = f"{self.task_path(instance_id, task_id)}/{action}"
        return self.call("PUT", path, **kwargs)

    def delete_task(self, instance_id: str, task_id: str, **kwargs) -> requests.Response:
        kwargs.setdefault("expect", 204)
        return self.call("DELETE", self.task_path(instance_id, task_id), **kwargs)

    def show_job(self, instance_id: str, job_id: str, **kwargs) -> dict:
        return self.call("GET", f"{self.instance_path(instance_id)}/tasks/{path_param(job_id)}", **kwargs).json()

    def list_jobs(self, instance_id: str, query=None, **kwargs) -> dict:
        return self.call("GET", f"{self.instance_path(instance_id)}/tasks", query=query, **kwargs).json()

    # ---- admin -------------------------------------------------------------

    def add_instance(self, name: str, bootstrap_servers: str, **fields) -> str:
        body = {"name": name, "bootstrap_servers": bootstrap_servers, **fields}
        response = self.request("POST", "/admin/v1/instances", body=body)
        if response.status_code != 200:
            raise ApiError(f"POST /admin/v1/instances: HTTP {response.status_code}: {response.text[:2000]}")
        return response.json()["instance_id"]

    def node_token(self, instance_id: str) -> dict:
        response = self.request("GET", f"/admin/v1/instances/{path_param(instance_id)}/connector/node-token")
        if response.status_code != 200:
            raise ApiError(f"GET node-token: HTTP {response.status_code}: {response.text[:2000]}")
        return response.json()

    # ---- waiting -----------------------------------------------------------

    def wait_instance_status(self, instance_id: str, status: str, timeout: float = 120.0) -> dict:
        """Poll ShowInstance until `status`; return the last body."""
        deadline = time.monotonic() + timeout
        last: dict = {}
        while time.monotonic() < deadline:
            last = self.show_instance(instance_id)
            if last.get("status") == status:
                return last
            time.sleep(0.25)
        raise AssertionError(f"instance {instance_id} not {status} after {timeout:.0f} s: {last}")

    def wait_task_status(self, instance_id: str, task_id: str, status: str, timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        last: dict = {}
        while time.monotonic() < deadline:
            last = self.show_task(instance_id, task_id)
            if last.get("status") == status:
                return last
            time.sleep(0.25)
        raise AssertionError(f"task {task_id} not {status} after {timeout:.0f} s: {last}")

    def wait_job_status(self, instance_id: str, job_id: str, status: str, timeout: float = 120.0) -> dict:
        deadline = time.monotonic() + timeout
        last: dict = {}
        while time.monotonic() < deadline:
            last = self.show_job(instance_id, job_id)
            if last["tasks"][0]["status"] == status:
                return last["tasks"][0]
            time.sleep(0.25)
        raise AssertionError(f"job {job_id} not {status} after {timeout:.0f} s: {last}")

    def enable_connector(self, instance_id: str, body: Any = None, timeout: float = 120.0) -> dict:
        """CreateConnector, then wait for the instance to be RUNNING; return its body."""
        created = self.create_connector(instance_id, body).json()
        shown = self.wait_instance_status(instance_id, "RUNNING", timeout)
        assert shown.get("connector_id") == created["connector_id"], shown
        return shown

    def ensure_connector(self, instance_id: str) -> dict:
        """Enable a connector unless the instance has one; return ShowInstance."""
        shown = self.show_instance(instance_id)
        if shown.get("connector_enable"):
            return self.wait_instance_status(instance_id, "RUNNING")
        return self.enable_connector(instance_id)
