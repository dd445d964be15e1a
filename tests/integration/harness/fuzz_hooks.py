"""schemathesis hooks of test_openapi.py, loaded by `st run` through
SCHEMATHESIS_HOOKS=harness.fuzz_hooks.

WEIR_FUZZ_CONTEXT names a JSON file written by the test:
{"key": {access_key, secret_key, project_id}, "ids": {"main": {...}, "victim": {...}},
 "node_token": TOKEN, "count_path": PATH}. "ids" maps each path parameter name
to real values; TOKEN is the node token of the victim instance's connector.

- before_call signs every request on the wire (harness.api.SignedAuth),
  including the probes that checks such as unsupported_method send. A case
  without an Authorization header is a negative case that tests missing
  credentials, so it goes out unsigned.
- map_case swaps generated path parameters of valid cases for real IDs part
  of the time, so that requests reach the code behind the 404s. Destructive
  operations and the node endpoints get the IDs of the "victim" instance;
  node requests that carry a generated bearer token get the victim
  connector's token part of the time.
- map_case also enables connectors with 2 nodes, the minimum, when the
  generated node_cnt is valid, so that the node processes the run starts fit
  on a small machine.
- At exit, {"signed": requests signed, "real_ids": cases given a real ID,
  "statuses": {operation: {status: responses}}} is written to count_path.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
from pathlib import Path

import schemathesis
from schemathesis.core.parameters import ParameterLocation

from harness.api import Key, SignedAuth

_CONTEXT = json.loads(Path(os.environ["WEIR_FUZZ_CONTEXT"]).read_text())
_AUTH = SignedAuth(Key(**_CONTEXT["key"]))
_IDS: dict[str, dict[str, list[str]]] = _CONTEXT["ids"]
_REAL_ID_CASES = 0
_STATUSES: dict[str, dict[int, int]] = {}


@atexit.register
def _write_count() -> None:
    counts = {"signed": _AUTH.count, "real_ids": _REAL_ID_CASES, "statuses": _STATUSES}
    Path(_CONTEXT["count_path"]).write_text(json.dumps(counts, indent=1, sort_keys=True))


def _is_node_endpoint(operation) -> bool:
    return operation.path.startswith("/internal/")


def _uses_victim(operation) -> bool:
    return (
        operation.method.upper() == "DELETE"
        or operation.path.endswith("/delete-connector")
        or _is_node_endpoint(operation)
    )


def _authorization(case) -> str | None:
    for name, value in (case.headers or {}).items():
        if name.lower() == "authorization":
            return name
    return None


def _pick(generated, pool: list[str]):
    """Map a generated value to one of `pool` or keep it. The choice is a
    hash of the value, so a case maps the same way when it is replayed, and
    four in five values become real ones."""
    if not pool:
        return generated
    digest = int(hashlib.sha256(repr(generated).encode()).hexdigest(), 16)
    if digest % 5 == 0:
        return generated
    return pool[digest // 5 % len(pool)]


def _swap_real_ids(case) -> None:
    meta = case.meta
    if not case.path_parameters or (meta is not None and meta.is_negative_at(ParameterLocation.PATH)):
        return
    global _REAL_ID_CASES
    pools = _IDS["victim" if _uses_victim(case.operation) else "main"]
    swapped = False
    for name, value in list(case.path_parameters.items()):
        if name in pools:
            case.path_parameters[name] = _pick(value, pools[name])
            swapped |= case.path_parameters[name] != value
    _REAL_ID_CASES += swapped


def _swap_node_token(case) -> None:
    header = _authorization(case)
    if header is None or not _is_node_endpoint(case.operation):
        return
    generated = case.headers[header]
    real = f"Bearer {_CONTEXT['node_token']}"
    case.headers[header] = _pick(generated, [real])


def _cap_node_count(case) -> None:
    if case.operation.method.upper() != "POST" or not case.operation.path.endswith("/connector"):
        return
    body = case.body
    if isinstance(body, dict) and type(body.get("node_cnt")) is int and 2 < body["node_cnt"] <= 16:
        body["node_cnt"] = 2


@schemathesis.hook
def map_case(context, case):
    _swap_real_ids(case)
    _swap_node_token(case)
    _cap_node_count(case)
    return case


@schemathesis.hook
def before_call(context, case, kwargs):
    if _authorization(case) is not None and not _is_node_endpoint(case.operation):
        kwargs["auth"] = _AUTH


@schemathesis.hook
def after_call(context, case, response):
    label = f"{case.operation.method.upper()} {case.operation.path}"
    counts = _STATUSES.setdefault(label, {})
    counts[response.status_code] = counts.get(response.status_code, 0) + 1
