"""Tests of the harness itself: the signer against the published vectors,
the dump checker against synthetic objects, the fault proxy, the broker."""

from __future__ import annotations

import hashlib
import os

import pytest
import requests

from harness import api
from harness.objects import (
    DumpFormat,
    LocalBucket,
    ObjectReader,
    ProducedRecord,
    S3Bucket,
    check_dump,
    join_key,
    object_name,
    time_directory,
)
from harness.s3 import FaultyProxy
from harness.statechange import NotFoundError, StateChangeConf, UnexpectedStateError, WaitTimeoutError
from harness.terraform import TerraformClient

VECTOR_KEY = api.Key("TESTACCESSKEY", "TESTSECRETKEY0123456789", "0123456789abcdef0123456789abcdef")
VECTOR_DATE = "20240101T000000Z"
VECTOR_HEADERS = {
    "Content-Type": "application/json",
    "User-Agent": "test-agent",
    "X-Project-Id": VECTOR_KEY.project_id,
    "Host": "127.0.0.1:8080",
    "X-Sdk-Date": VECTOR_DATE,
}
VECTOR_POST_PATH = "/v2/0123456789abcdef0123456789abcdef/instances/inst-1/connector"
VECTOR_GET_PATH = "/v2/0123456789abcdef0123456789abcdef/instances/inst-1/connector/tasks"
VECTOR_QUERY = [("offset", 0), ("limit", 10), ("name", "a b/c*")]


# ---- signer -----------------------------------------------------------------


def test_signer_post_vector():
    body = b'{"node_cnt": 2}'
    assert hashlib.sha256(body).hexdigest() == "c6e328381e22ebb38772c1fa6611b3f4505164b11e0193388c7099c3999cd300"
    canonical, signed = api.canonical_request("POST", VECTOR_POST_PATH, [], VECTOR_HEADERS, body)
    assert signed == ["content-type", "host", "user-agent", "x-project-id", "x-sdk-date"]
    assert hashlib.sha256(canonical.encode()).hexdigest() == (
        "1c2840fbc6eaf1007c970ed91d8316468bd5507395fa43e457b5e6837a3121dd"
    )
    expected = "cc7a04f02ab103d7792ed31ccc242c783a0a464a5341c231e2d03d9d082aa86b"
    assert api.signature(VECTOR_KEY.secret_key, VECTOR_DATE, canonical) == expected

    client = api.ApiClient("http://127.0.0.1:8080", VECTOR_KEY)
    uri, headers = client.sign("POST", VECTOR_POST_PATH, [], body, {"User-Agent": "test-agent"}, VECTOR_DATE)
    assert uri == VECTOR_POST_PATH
    assert headers["Authorization"] == (
        "SDK-HMAC-SHA256 Access=TESTACCESSKEY, "
        "SignedHeaders=content-type;host;user-agent;x-project-id;x-sdk-date, "
        f"Signature={expected}"
    )


def test_signer_get_vector():
    canonical, _ = api.canonical_request("GET", VECTOR_GET_PATH, VECTOR_QUERY, VECTOR_HEADERS, b"")
    lines = canonical.split("\n")
    assert lines[1].endswith("/connector/tasks/")
    assert lines[2] == "limit=10&name=a%20b%2Fc%2A&offset=0"
    assert lines[-1] == api.EMPTY_SHA256
    assert hashlib.sha256(canonical.encode()).hexdigest() == (
        "5744933b3397eca20b4069085a7dc429f2e862227b51295af62daaa88193b989"
    )
    expected = "ad263e0e23fc38e765c09f52e36931c4fc5552451614c0382630d0bc8d625098"
    assert api.signature(VECTOR_KEY.secret_key, VECTOR_DATE, canonical) == expected

    client = api.ApiClient("http://127.0.0.1:8080", VECTOR_KEY)
    uri, headers = client.sign("GET", VECTOR_GET_PATH, VECTOR_QUERY, b"", {"User-Agent": "test-agent"}, VECTOR_DATE)
    assert uri == VECTOR_GET_PATH + "?limit=10&name=a%20b%2Fc%2A&offset=0"
    assert headers["Authorization"].endswith(f"Signature={expected}")


# ---- checker ----------------------------------------------------------------

TOPIC = "orders"
FORMAT = DumpFormat(store_keys=True, record_delimiter="\n")


def _produced(count: int = 10, partition: int = 0) -> dict[int, list[ProducedRecord]]:
    base = 1_700_000_000_000
    return {
        partition: [
            ProducedRecord(offset, f"k{offset}".encode(), f"v{offset}".encode(), base + offset * 60_000)
            for offset in range(count)
        ]
    }


def _write(bucket: LocalBucket, records: list[ProducedRecord], fmt: DumpFormat = FORMAT, partition: int = 0) -> str:
    """Write records as one object the way the contract lays them out."""
    key = join_key(
        "out", TOPIC, time_directory(records[0].timestamp_ms, "yyyy/MM/dd"), object_name(TOPIC, partition, records[0].offset)
    )
    path = bucket.root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(fmt.encode(record) for record in records))
    os.setxattr(path, "user.weir.first_offset", str(records[0].offset).encode())
    os.setxattr(path, "user.weir.last_offset", str(records[-1].offset).encode())
    os.setxattr(path, "user.weir.record_count", str(len(records)).encode())
    return key


def _check(bucket: LocalBucket, produced, **options):
    objects, stray = ObjectReader(bucket, "out/").read_all()
    assert stray == []
    return check_dump(objects, produced, FORMAT, TOPIC, obs_path="out", partition_format="yyyy/MM/dd", **options)


def test_checker_accepts_exact_cover(tmp_path):
    bucket = LocalBucket(tmp_path, "b")
    produced = _produced()
    _write(bucket, produced[0][:4])
    _write(bucket, produced[0][4:])
    result = _check(bucket, produced)
    assert result.ok, result.summary()
    assert result.covered == {0: 10}


def test_checker_finds_duplicate_record(tmp_path):
    bucket = LocalBucket(tmp_path, "b")
    produced = _produced()
    _write(bucket, produced[0][:5])
    _write(bucket, produced[0][4:])  # offset 4 is in both objects
    result = _check(bucket, produced)
    assert not result.ok
    assert any("overlap" in problem for problem in result.problems), result.summary()


def test_checker_finds_gap(tmp_path):
    bucket = LocalBucket(tmp_path, "b")
    produced = _produced()
    _write(bucket, produced[0][:4])
    _write(bucket, produced[0][5:])  # offset 4 is missing
    result = _check(bucket, produced)
    assert any("gap, offsets 4..4" in problem for problem in result.problems), result.summary()


def test_checker_finds_missing_tail(tmp_path):
    bucket = LocalBucket(tmp_path, "b")
    produced = _produced()
    _write(bucket, produced[0][:7])
    result = _check(bucket, produced)
    assert any("offsets 7..9 (3 records) are in no object" in p for p in result.problems), result.summary()
    assert _check(bucket, produced, complete=False).ok


def test_checker_finds_wrong_content(tmp_path):
    bucket = LocalBucket(tmp_path, "b")
    produced = _produced()
    altered = list(produced[0])
    altered[3] = ProducedRecord(3, b"k3", b"changed", altered[3].timestamp_ms)
    _write(bucket, altered)
    result = _check(bucket, produced)
    assert any("differs from the produced record at offset 3" in p for p in result.problems), result.summary()


def test_checker_finds_reordered_records(tmp_path):
    bucket = LocalBucket(tmp_path, "b")
    produced = _produced()
    swapped = list(produced[0])
    swapped[2], swapped[3] = swapped[3], swapped[2]
    _write(bucket, swapped)
    assert not _check(bucket, produced).ok


def test_checker_finds_wrong_metadata(tmp_path):
    bucket = LocalBucket(tmp_path, "b")
    produced = _produced()
    key = _write(bucket, produced[0])
    os.setxattr(bucket.root / key, "user.weir.last_offset", b"8")
    result = _check(bucket, produced)
    assert any("metadata last_offset is 8, expected 9" in p for p in result.problems), result.summary()


def test_checker_finds_wrong_time_directory(tmp_path):
    bucket = LocalBucket(tmp_path, "b")
    produced = _produced()
    key = _write(bucket, produced[0])
    target = bucket.root / key.replace("/2023/", "/2022/")
    target.parent.mkdir(parents=True)
    os.rename(bucket.root / key, target)
    result = _check(bucket, produced)
    assert any("expected key" in p for p in result.problems), result.summary()


def test_checker_respects_start_offset(tmp_path):
    bucket = LocalBucket(tmp_path, "b")
    produced = _produced()
    _write(bucket, produced[0][6:])
    assert _check(bucket, produced, start_offsets={0: 6}).ok
    _write(bucket, produced[0][2:6])
    result = _check(bucket, produced, start_offsets={0: 6})
    assert any("before the start offset" in p for p in result.problems), result.summary()


@pytest.mark.parametrize(
    ("delimiter", "store_keys", "expected"),
    [
        ("\n", False, b"v\n"),
        ("\\n", False, b"v\n"),
        ("NULL", False, b"v"),
        (",", True, b"k:v,"),
        ("|", True, b"k:v|"),
    ],
)
def test_format_encodes_record(delimiter, store_keys, expected):
    fmt = DumpFormat(store_keys=store_keys, record_delimiter=delimiter)
    assert fmt.encode(ProducedRecord(0, b"k", b"v")) == expected


def test_format_encodes_tombstone_and_null_key():
    fmt = DumpFormat(store_keys=True, record_delimiter="\n")
    assert fmt.encode(ProducedRecord(0, b"k", None)) == b"k:\n"
    assert fmt.encode(ProducedRecord(0, None, b"v")) == b":v\n"


def test_time_directory_formats():
    timestamp = 1_357_035_300_000  # 2013-01-01 10:15 UTC
    assert time_directory(timestamp, "yyyy") == "2013"
    assert time_directory(timestamp, "yyyy/MM/dd/HH/mm") == "2013/01/01/10/15"
    assert time_directory(timestamp, "yyyy/MM/dd/HH", "America/New_York") == "2013/01/01/05"


def test_checker_reads_s3_objects(s3):
    bucket = s3.create_bucket("checker-test")
    produced = _produced(3)
    data = b"".join(FORMAT.encode(record) for record in produced[0])
    key = join_key("out", TOPIC, time_directory(produced[0][0].timestamp_ms, "yyyy/MM/dd"), object_name(TOPIC, 0, 0))
    s3.client.put_object(
        Bucket=bucket,
        Key=key,
        Body=data,
        Metadata={"weir-first-offset": "0", "weir-last-offset": "2", "weir-record-count": "3"},
    )
    objects, _ = ObjectReader(S3Bucket(s3.client, bucket), "out/").read_all()
    result = check_dump(objects, produced, FORMAT, TOPIC, obs_path="out", partition_format="yyyy/MM/dd")
    assert result.ok, result.summary()


# ---- StateChangeConf poller and terraform signing ----------------------------


def scripted(*states):
    """A refresh function that returns the given states in order, then the last one."""
    remaining = list(states)

    def refresh():
        state = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        return (None, "") if state is None else ({"status": state}, state)

    return refresh


def test_poller_reaches_target_through_pending():
    conf = StateChangeConf(["CREATING"], ["RUNNING"], scripted("CREATING", "CREATING", "RUNNING"), timeout=5, poll_interval=0.01)
    assert conf.wait() == {"status": "RUNNING"}
    assert conf.seen == ["CREATING", "RUNNING"]


def test_poller_rejects_unexpected_state():
    conf = StateChangeConf(["WAITING"], ["RUNNING"], scripted("WAITING", "CREATING", "RUNNING"), timeout=5, poll_interval=0.01)
    with pytest.raises(UnexpectedStateError) as raised:
        conf.wait()
    assert raised.value.state == "CREATING"


def test_poller_rejects_empty_state():
    conf = StateChangeConf([], ["RUNNING"], scripted("EXTENDING", ""), timeout=5, poll_interval=0.01)
    with pytest.raises(UnexpectedStateError) as raised:
        conf.wait()
    assert raised.value.state == ""


def test_poller_empty_pending_waits_on_anything():
    conf = StateChangeConf([], ["RUNNING"], scripted("EXTENDING", "CONNECTOR_DELETING", "RUNNING"), timeout=5, poll_interval=0.01)
    conf.wait()
    assert conf.seen == ["EXTENDING", "CONNECTOR_DELETING", "RUNNING"]


def test_poller_counts_not_found():
    conf = StateChangeConf(["A"], ["B"], scripted(None), timeout=5, poll_interval=0.01, not_found_checks=3)
    with pytest.raises(NotFoundError):
        conf.wait()
    found_late = StateChangeConf(["A"], ["B"], scripted(None, None, "B"), timeout=5, poll_interval=0.01, not_found_checks=3)
    assert found_late.wait() == {"status": "B"}


def test_poller_times_out():
    conf = StateChangeConf(["A"], ["B"], scripted("A"), timeout=0.2, poll_interval=0.05)
    with pytest.raises(WaitTimeoutError):
        conf.wait()


def test_poller_needs_continuous_target():
    refresh = scripted("B", "A", "B", "B")
    conf = StateChangeConf(["A"], ["B"], refresh, timeout=5, poll_interval=0.01, continuous_target_occurence=2)
    conf.wait()
    assert conf.seen == ["B", "A", "B"]


def test_terraform_signature_leaves_host_and_project_unsigned():
    sent = {}

    class Capture:
        def request(self, method, url, data=None, headers=None, **kwargs):
            sent.update(method=method, url=url, data=data, headers=headers)
            response = requests.Response()
            response.status_code = 200
            response.request = requests.Request(method, url).prepare()
            return response

    client = TerraformClient("http://127.0.0.1:8080", VECTOR_KEY)
    client.session = Capture()
    client.request("POST", "/instances/inst-1/connector", body={"node_cnt": 2, "bandwidth": "100MB"})
    headers = sent["headers"]
    assert sent["data"] == b'{"bandwidth":"100MB","node_cnt":2}\n'
    authorization = headers["Authorization"]
    assert "SignedHeaders=accept;content-type;user-agent;x-sdk-date," in authorization
    assert headers["X-Project-Id"] == VECTOR_KEY.project_id
    canonical, _ = api.canonical_request(
        "POST",
        VECTOR_POST_PATH,
        [],
        {name: headers[name] for name in ("Accept", "Content-Type", "User-Agent", "X-Sdk-Date")},
        sent["data"],
    )
    expected = api.signature(VECTOR_KEY.secret_key, headers["X-Sdk-Date"], canonical)
    assert authorization.endswith(f"Signature={expected}")


# ---- fault proxy and broker -------------------------------------------------


def test_faulty_proxy_modes(s3):
    proxy = FaultyProxy(s3.port).start()
    try:
        url = f"{proxy.endpoint}/"
        assert requests.get(url, timeout=5).status_code == 200

        proxy.set_mode("http503")
        assert requests.get(url, timeout=5).status_code == 503

        proxy.set_mode("reset")
        with pytest.raises(requests.ConnectionError):
            requests.get(url, timeout=5)

        proxy.set_mode("pass")
        assert requests.get(url, timeout=5).status_code == 200
    finally:
        proxy.stop()


def test_broker_round_trip(broker):
    topic = broker.unique_topic("harness")
    broker.create_topic(topic, 3)
    records = [(f"k{i}".encode(), f"v{i}".encode(), 1_700_000_000_000 + i) for i in range(300)]
    produced = broker.produce(topic, records, partition_of=lambda i, _: i % 3)
    assert {p: len(r) for p, r in produced.items()} == {0: 100, 1: 100, 2: 100}
    assert broker.high_watermarks(topic) == {0: 100, 1: 100, 2: 100}
    consumed = broker.consume_all(topic)
    for partition, expected in produced.items():
        assert [(r.offset, r.key, r.value, r.timestamp_ms) for r in consumed[partition]] == [
            (r.offset, r.key, r.value, r.timestamp_ms) for r in expected
        ]
