"""Property-based tests of the whole HTTP API from its own OpenAPI document.

schemathesis (`st run`) reads GET /openapi.json from a running server and
sends generated requests to every operation: valid ones, boundary cases of
each parameter, and invalid ones that break the schema of a parameter or
the body. The hooks in harness/fuzz_hooks.py sign each request on the wire
and swap generated IDs for real ones part of the time, so that the requests
also reach the code behind the 404s. The run fails on any 5xx, any
response whose status, content type, headers or body the document does not
describe, any invalid request that is accepted, and any response to an
undocumented method other than 405 with an Allow header.

The CLI runs schemathesis rather than its pytest plugin, because the plugin's
fixture-based schemas (schemathesis 4.32.5) use `Node._nodeid`, which
pytest 9.2 no longer has.

WEIR_FUZZ_SEED sets the seed (default fixed, so that CI runs are
repeatable); WEIR_FUZZ_EXAMPLES the examples per operation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from harness.tasks import obs_task, sink_config

HERE = Path(__file__).resolve().parent
ST = Path(sys.executable).parent / "st"
# Output of the last run, kept where pytest's rotation of temporary
# directories does not remove it.
OUTPUT = HERE.parents[1] / ".weir-test" / "schemathesis-output.txt"

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "unsupported_method",
    "allow_header_conformance",
]
# Not run: ignored_auth, because the hooks replace the credentials that
# schemathesis generates with real ones, so it would see its invalid ones
# accepted (test_api.py tests unsigned, tampered and stale requests);
# positive_data_acceptance, because the DMS API responds 400 to valid
# requests that conflict with the state, such as a duplicate task name, a
# busy instance or a full task quota.

# Examples per operation in the fuzzing phase; the coverage phase adds its
# boundary cases. With 25 operations a run sends a few thousand requests.
MAX_EXAMPLES = int(os.environ.get("WEIR_FUZZ_EXAMPLES", "100"))
SEED = int(os.environ.get("WEIR_FUZZ_SEED", "20261204"))

# Requests the run must have sent, so that a broken hook or filter cannot
# pass with a handful of requests.
MIN_REQUESTS = 2000


def _waiting_tasks(api, instance_id: str, topic: str, count: int) -> list[str]:
    ids = []
    for index in range(count):
        body = obs_task(topic, sink_config("fuzz-bucket", "fuzz"), name=f"fuzz-{index}", start_later=True)
        ids.append(api.create_task(instance_id, body).json()["id"])
    return ids


@pytest.fixture(scope="module")
def fuzz_context(module_server, broker, tmp_path_factory) -> Path:
    """Write the hooks' context: the key and the real IDs of an instance with
    a connector and tasks plus one without a connector (`main`), and of an
    instance for destructive operations (`victim`)."""
    api = module_server.api
    topic = broker.unique_topic("fuzz")
    broker.create_topic(topic, 1)
    main = module_server.instance_ids[0]
    victim = api.add_instance(f"victim-{uuid.uuid4().hex[:6]}", broker.bootstrap, broker_num=1)
    spare = api.add_instance(f"spare-{uuid.uuid4().hex[:6]}", broker.bootstrap, broker_num=1)
    for instance_id in (main, victim):
        api.enable_connector(instance_id)

    def ids_of(instance_id: str) -> dict[str, list[str]]:
        return {
            "project_id": [api.key.project_id],
            "instance_id": [instance_id],
            "task_id": _waiting_tasks(api, instance_id, topic, 3),
            "job_id": [job["id"] for job in api.list_jobs(instance_id)["tasks"]],
            "connector_id": [api.show_instance(instance_id)["connector_id"]],
        }

    ids = {"main": ids_of(main), "victim": ids_of(victim)}
    node_token = api.node_token(victim)["token"]
    ids["main"]["instance_id"].append(spare)
    work = tmp_path_factory.mktemp("fuzz")
    context = {
        "key": {"access_key": api.key.access_key, "secret_key": api.key.secret_key, "project_id": api.key.project_id},
        "ids": ids,
        "node_token": node_token,
        "count_path": str(work / "count"),
    }
    path = work / "context.json"
    path.write_text(json.dumps(context))
    return path


@pytest.mark.timeout(600)
def test_api_matches_its_document(module_server, fuzz_context):
    work = fuzz_context.parent
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "harness.fuzz_hooks",
        "WEIR_FUZZ_CONTEXT": str(fuzz_context),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
    }
    command = [
        str(ST),
        "run",
        f"{module_server.url}/openapi.json",
        "--url",
        module_server.url,
        "--checks",
        ",".join(CHECKS),
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--continue-on-failure",
        "--suppress-health-check",
        "all",
        "--request-timeout",
        "30",
        "--report",
        "junit",
        "--report-dir",
        str(work / "report"),
    ]
    result = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True, timeout=560)
    output = result.stdout + result.stderr
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(output)
    assert result.returncode == 0, f"schemathesis failed (exit {result.returncode}), full output in {OUTPUT}:\n{output[-20000:]}"
    counts = json.loads((work / "count").read_text())
    print(f"schemathesis sent {counts['signed']} signed requests, {counts['real_ids']} cases with real IDs")
    assert counts["signed"] >= MIN_REQUESTS, f"only {counts['signed']} signed requests were sent:\n{output[-5000:]}"
    assert counts["real_ids"] >= MIN_REQUESTS // 4, f"only {counts['real_ids']} cases named real resources"
    assert requests.get(f"{module_server.url}/healthz", timeout=10).text == "ok"
