"""Assertions on API responses shared by the tests."""

from __future__ import annotations

import json
import time

import requests


def assert_request_id(response: requests.Response) -> None:
    assert response.headers.get("X-Request-Id"), (
        f"{response.request.method} {response.request.path_url}: no X-Request-Id header "
        f"(HTTP {response.status_code}, headers {dict(response.headers)})"
    )


def assert_error(response: requests.Response, status: int, code: str) -> dict:
    """Check an error response: HTTP status, error_code, a message, X-Request-Id."""
    where = f"{response.request.method} {response.request.path_url}"
    assert response.status_code == status, f"{where}: expected HTTP {status}, got {response.status_code}: {response.text[:1000]}"
    try:
        body = response.json()
    except json.JSONDecodeError:
        raise AssertionError(f"{where}: error body is not JSON: {response.text[:1000]!r}") from None
    assert body.get("error_code") == code, f"{where}: expected error_code {code}, got {body}"
    assert isinstance(body.get("error_msg"), str) and body["error_msg"], f"{where}: empty error_msg in {body}"
    assert_request_id(response)
    return body


def assert_no_content(response: requests.Response) -> None:
    """Check a 204 response with an empty body."""
    where = f"{response.request.method} {response.request.path_url}"
    assert response.status_code == 204, f"{where}: expected HTTP 204, got {response.status_code}: {response.text[:1000]}"
    assert response.content == b"", f"{where}: 204 with a body: {response.content[:200]!r}"
    assert_request_id(response)


def assert_ok(response: requests.Response, status: int = 200) -> dict:
    where = f"{response.request.method} {response.request.path_url}"
    assert response.status_code == status, f"{where}: expected HTTP {status}, got {response.status_code}: {response.text[:1000]}"
    assert_request_id(response)
    return response.json()


def observe_states(fetch, final: str, timeout: float, interval: float = 0.05) -> list[str]:
    """Call fetch() until it returns `final`; return the distinct states seen, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        state = fetch()
        if not seen or seen[-1] != state:
            seen.append(state)
        if state == final:
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"state {final} not reached after {timeout:.0f} s; states seen: {seen}")
        time.sleep(interval)
