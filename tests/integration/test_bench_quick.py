"""The benchmark harness in quick mode: `scripts/bench.sh --quick` must run
every section and write numbers for each. Nothing here checks speed."""

from __future__ import annotations

import json
import math
import os
import pwd
import subprocess

import pytest

from conftest import REPO_ROOT, WEIR_BIN

SECTIONS = ("dump", "replication", "scaling", "caps", "memory", "latency", "control")


def finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench-quick")
    env = dict(os.environ)
    # conftest.py points HOME at a scratch directory, but cargo, rustup and
    # the tool caches live under the user's real home directory.
    env["HOME"] = pwd.getpwuid(os.getuid()).pw_dir
    env["WEIR_BIN"] = str(WEIR_BIN)
    result = subprocess.run(
        [str(REPO_ROOT / "scripts" / "bench.sh"), "--quick", "--out", str(out)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"bench.sh --quick exited with {result.returncode}:\n{result.stderr[-6000:]}"
    page = (out / "BENCHMARKS.md").read_text()
    results = json.loads((out / "results.json").read_text())
    results["page"] = page
    return results


@pytest.mark.slow
@pytest.mark.timeout(2100)
def test_quick_run_has_every_section(quick_results):
    assert list(quick_results["sections"]) == list(SECTIONS)
    for name, section in quick_results["sections"].items():
        assert "error" not in section, f"section {name} failed: {section.get('error')}"


@pytest.mark.slow
def test_quick_run_records_machine_and_versions(quick_results):
    assert quick_results["machine"]["cores"] >= 1
    assert len(quick_results["machine"]["load_average"]) == 3
    assert quick_results["versions"]["librdkafka"] == "2.12.1"
    assert quick_results["versions"]["tansu"] == "tansu 0.6.0"
    assert quick_results["command"].startswith("scripts/bench.sh --quick")


@pytest.mark.slow
def test_quick_dump_has_rates(quick_results):
    rows = quick_results["sections"]["dump"]["rows"]
    assert [row["record_size"] for row in rows] == [100, 1024, 10240]
    for row in rows:
        for column in ("baseline", "local", "s3"):
            assert finite(row[column]["mb_per_s"]), f"{row['record_size']} B {column}: {row[column]}"
            assert row[column]["records"] == row["backlog"]["records"]


@pytest.mark.slow
def test_quick_sections_have_numbers(quick_results):
    sections = quick_results["sections"]
    replication = sections["replication"]["rows"]
    assert [row["rtt_ms"] for row in replication] == [None, 100]
    for row in replication:
        assert finite(row["consume"]["mb_per_s"]), f"RTT {row['rtt_ms']}: {row['consume']}"
        assert finite(row["produce"]["mb_per_s"]), f"RTT {row['rtt_ms']}: {row['produce']}"
        assert finite(row["weir"]["mb_per_s"]), f"RTT {row['rtt_ms']}: {row['weir']}"
        assert finite(row["weir"]["cpu_seconds_per_gib"]), f"RTT {row['rtt_ms']}: {row['weir']}"
    assert [run["node_cnt"] for run in sections["scaling"]["rows"]] == [2, 3, 4]
    assert all(finite(run["cpu_seconds_per_gib"]) for run in sections["scaling"]["rows"])
    assert len(sections["caps"]["rows"]) == 3
    assert all(finite(row["measured_bytes_per_second"]) for row in sections["caps"]["rows"])
    assert {row["partitions"] for row in sections["memory"]["rows"]} >= {10, 100, 1000}
    assert all(row["peak_rss_bytes"] > 0 for row in sections["memory"]["rows"])
    assert [row["name"] for row in sections["latency"]["rows"]] == ["low", "high"]
    assert all(finite(row["p99_seconds"]) for row in sections["latency"]["rows"])
    operations = [row["operation"] for row in sections["control"]["rows"]]
    assert operations == ["ShowConnectorTask", "ListConnectorTasks"]
    assert all(row["requests"] > 0 for row in sections["control"]["rows"])


@pytest.mark.slow
def test_quick_page_names_every_section(quick_results):
    page = quick_results["page"]
    for title in ("1. Dump", "2. Replication", "3. Scaling", "4. Bandwidth cap", "5. Memory", "6. Latency", "7. Control"):
        assert f"### {title}" in page
