"""Requests as the terraform provider (huaweicloud/terraform-provider-huaweicloud
on chnsz/golangsdk) sends them, and its wait loops for Smart Connect.

Differences from the Python SDK that matter to a server:
- The Go client signs the headers it has at signing time: `Accept`,
  `Content-Type`, `User-Agent` and `X-Sdk-Date`. Go keeps `Host` outside the
  header map, so `host` is not signed, and `X-Project-Id` is added after
  signing, so it is sent unsigned.
- JSON bodies come from Go's encoder: keys sorted, no spaces, and a trailing
  newline. A request with nothing to send has the body `{}` plus newline.
- Each call accepts only its OkCodes: GET 200; POST and PUT 200, 201 or 202;
  DELETE 200, 202 or 204. Task delete and task actions accept only 204.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import urlsplit

import requests

from .api import ALGORITHM, DATE_FORMAT, Key, canonical_query, canonical_request, path_param, signature
from .statechange import StateChangeConf

USER_AGENT = "terraform-provider-huaweicloud/weir-replay"
DEFAULT_OK_CODES = {
    "GET": (200,),
    "POST": (200, 201, 202),
    "PUT": (200, 201, 202),
    "DELETE": (200, 202, 204),
}
# Codes on which handleMultiOperationsError retries (HTTP 400 only).
RETRY_CODES = ("DMS.00400026", "CBC.99003651")


class TerraformHttpError(AssertionError):
    """A status outside the call's OkCodes, as golangsdk's ErrDefaultXXX."""

    def __init__(self, response: requests.Response, ok_codes: tuple[int, ...]):
        self.response = response
        self.status = response.status_code
        try:
            self.body = response.json()
        except ValueError:
            self.body = None
        code = self.body.get("error_code") if isinstance(self.body, dict) else None
        self.error_code = code
        super().__init__(
            f"{response.request.method} {response.request.path_url}: HTTP {self.status}, expected one of "
            f"{list(ok_codes)}: {response.text[:1000]}"
        )


def go_json(body: Any) -> bytes:
    """Encode a body as Go's json.Encoder does: sorted keys, compact, newline."""
    return (json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n").encode()


class TerraformClient:
    """Send requests to one Weir server signed the way golangsdk signs them."""

    def __init__(self, endpoint: str, key: Key, timeout: float = 30.0):
        self.endpoint = endpoint.rstrip("/")
        self.key = key
        self.timeout = timeout
        self.session = requests.Session()
        self.netloc = urlsplit(self.endpoint).netloc
        # Every response, for checks across a whole replay.
        self.responses: list[requests.Response] = []

    def v2(self, suffix: str) -> str:
        return f"/v2/{path_param(self.key.project_id)}{suffix}"

    def request(
        self,
        method: str,
        suffix: str,
        body: Any = None,
        query: list[tuple[str, Any]] | None = None,
        ok_codes: tuple[int, ...] | None = None,
        content_type: str | None = None,
    ) -> requests.Response:
        """Send one request to /v2/{project}{suffix}; raise TerraformHttpError
        unless the status is one of `ok_codes` (default: the method's).

        `content_type` sets a Content-Type header (some calls send one on a
        GET). A request with a body sends `application/json` by default.
        """
        path = self.v2(suffix)
        raw = go_json(body) if body is not None else b""
        date = datetime.now(timezone.utc).strftime(DATE_FORMAT)
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT, "X-Sdk-Date": date}
        if content_type is not None:
            headers["Content-Type"] = content_type
        elif body is not None:
            headers["Content-Type"] = "application/json"
        params = list(query or [])
        canonical, signed = canonical_request(method, path, params, headers, raw)
        headers["Authorization"] = (
            f"{ALGORITHM} Access={self.key.access_key}, SignedHeaders={';'.join(signed)}, "
            f"Signature={signature(self.key.secret_key, date, canonical)}"
        )
        # golangsdk adds the project header after signing.
        headers["X-Project-Id"] = self.key.project_id
        # The provider builds the query by hand, in its own order.
        query_string = "&".join(canonical_query([pair]) for pair in params)
        url = f"{self.endpoint}{path}" + (f"?{query_string}" if query_string else "")
        response = self.session.request(
            method, url, data=raw or None, headers=headers, timeout=self.timeout, allow_redirects=False
        )
        self.responses.append(response)
        allowed = ok_codes or DEFAULT_OK_CODES[method]
        if response.status_code not in allowed:
            raise TerraformHttpError(response, allowed)
        return response

    def instance_path(self, instance_id: str) -> str:
        return f"/instances/{instance_id}"

    def task_path(self, instance_id: str, task_id: str) -> str:
        return f"/instances/{instance_id}/connector/tasks/{task_id}"

    # ---- refresh functions ---------------------------------------------------

    def instance_state(self, instance_id: str) -> Callable[[], tuple[Any, str]]:
        """KafkaInstanceStateRefreshFunc: a 404 is the state DELETED."""

        def refresh() -> tuple[Any, str]:
            try:
                body = self.request("GET", self.instance_path(instance_id)).json()
            except TerraformHttpError as error:
                if error.status == 404:
                    return {}, "DELETED"
                raise
            return body, body.get("status", "")

        return refresh

    def task_state(self, instance_id: str, task_id: str) -> Callable[[], tuple[Any, str]]:
        """kafkav2SmartConnectTaskStateRefreshFunc: any error ends the wait."""

        def refresh() -> tuple[Any, str]:
            body = self.request("GET", self.task_path(instance_id, task_id)).json()
            status = body.get("status", "")
            return body, status if isinstance(status, str) else ""

        return refresh


def job_state(client: TerraformClient, instance_id: str, job_id: str) -> Callable[[], tuple[Any, str]]:
    """instanceTaskStatusRefreshFunc with the target SUCCESS: FAILED or
    DELETED ends the wait with an error, SUCCESS is COMPLETED, and any other
    status is PENDING."""

    def refresh() -> tuple[Any, str]:
        body = client.request(
            "GET",
            f"{client.instance_path(instance_id)}/tasks/{job_id}",
            content_type="application/json;charset=utf-8",
        ).json()
        tasks = body.get("tasks") or [{}]
        status = tasks[0].get("status", "")
        if status in ("FAILED", "DELETED"):
            raise AssertionError(f"background task {job_id} ended {status}: {tasks[0]}")
        return body, "COMPLETED" if status == "SUCCESS" else "PENDING"

    return refresh


def should_retry(error: TerraformHttpError) -> bool:
    """handleMultiOperationsError of the kafka package: retry on HTTP 400
    with DMS.00400026 or CBC.99003651."""
    return error.status == 400 and error.error_code in RETRY_CODES


def retry_with_wait(
    call: Callable[[], requests.Response],
    wait: Callable[[], tuple[Any, str]],
    wait_target: list[str],
    timeout: float,
    delay: float,
    poll_interval: float,
) -> tuple[requests.Response, list[TerraformHttpError]]:
    """common.RetryContextWithWaitForState: send, and on a retryable error
    wait until the instance reaches `wait_target` (no pending set, so any
    other state keeps waiting), then send again.

    Returns the successful response and the retried errors.
    """
    retried: list[TerraformHttpError] = []
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call(), retried
        except TerraformHttpError as error:
            if not should_retry(error):
                raise
            retried.append(error)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"still busy after {timeout:.0f} s: {[e.error_code for e in retried]}")
        StateChangeConf(
            pending=[], target=wait_target, refresh=wait, timeout=remaining, delay=delay, poll_interval=poll_interval
        ).wait()
