#!/usr/bin/env bash
# Quickstart: dump the nycflights13 flights from Kafka to files with Weir.
#
# Steps:
# 1. Build weir (release) and install the tansu broker and the Python venv
#    if needed (scripts/setup-test-env.sh).
# 2. Start tansu on loopback with SQLite storage, and
#    `weir server --data-dir ./quickstart-data`.
# 3. With the weir CLI: register the broker as an instance, enable Smart
#    Connect, create an OBS_SINK task that writes to the local bucket
#    "quickstart".
# 4. Produce 336,776 flights and wait until every record is in an object.
# Everything it started is stopped on exit. The objects stay in
# ./quickstart-data/buckets/quickstart/.
#
# Environment: WEIR_QUICKSTART_KAFKA_PORT (default 19092) is the broker port.
# The server listens on 127.0.0.1:8780.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
# shellcheck source=scripts/setup-test-env.sh
source scripts/setup-test-env.sh

DATA_DIR="$REPO_ROOT/quickstart-data"
LISTEN="127.0.0.1:8780"
KAFKA_PORT="${WEIR_QUICKSTART_KAFKA_PORT:-19092}"
BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
TOPIC="flights"
BUCKET="quickstart"
WEIR="$REPO_ROOT/target/release/weir"
PYTHON="$VENV_DIR/bin/python"
WAIT_SECONDS=900

say() {
    echo "quickstart: $*"
}

fail() {
    echo "quickstart: error: $*" >&2
    exit 1
}

PIDS=()
cleanup() {
    local status=$?
    # Stop in reverse order: the server (and its nodes) before the broker.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        local pid="${PIDS[i]}"
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM -- "-$pid" 2>/dev/null || true
            for _ in $(seq 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.2
            done
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
    done
    if [[ $status -ne 0 ]]; then
        say "failed; logs are in $DATA_DIR/*.log"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Start a command in a new session (its own process group) with its output
# in a log file, and remember its id so that cleanup stops the whole group.
start_service() {
    local log="$1"
    shift
    setsid "$@" >"$log" 2>&1 </dev/null &
    PIDS+=("$!")
}

port_in_use() {
    "$PYTHON" - "$1" <<'EOF'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
with socket.socket() as sock:
    sys.exit(0 if sock.connect_ex((host, int(port))) == 0 else 1)
EOF
}

weir() {
    "$WEIR" --output json "$@"
}

json_field() {
    "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

say "building weir (cargo build --release)"
cargo build --release --locked

ensure_tansu
ensure_venv

for address in "$LISTEN" "$BOOTSTRAP"; do
    if port_in_use "$address"; then
        fail "$address is already in use; stop what listens there (or set WEIR_QUICKSTART_KAFKA_PORT)"
    fi
done

say "removing the previous run's $DATA_DIR"
rm -rf "$DATA_DIR"
mkdir -p "$DATA_DIR"

# SQLite rather than memory storage: tansu 0.6.0's memory engine skips the
# rest of a batch when a consumer fetches from an offset inside it, which
# loses records whenever a node resumes a partition. tansu reads the path of
# sqlite://PATH relative to its working directory.
say "starting tansu on $BOOTSTRAP (SQLite storage in $DATA_DIR/tansu.db)"
start_service "$DATA_DIR/tansu.log" env -u STORAGE_ENGINE -u LISTENER_URL -u ADVERTISED_LISTENER_URL \
    -C "$DATA_DIR" "$TANSU_BIN" broker \
    --listener-url "tcp://$BOOTSTRAP" \
    --advertised-listener-url "tcp://$BOOTSTRAP" \
    --storage-engine "sqlite://tansu.db"

say "starting weir server on $LISTEN"
start_service "$DATA_DIR/weir-server.log" env -u WEIR_LISTEN -u WEIR_DATA_DIR \
    "$WEIR" server --data-dir "$DATA_DIR" --listen "$LISTEN"
for _ in $(seq 300); do
    if curl -fsS "http://$LISTEN/healthz" >/dev/null 2>&1; then
        break
    fi
    sleep 0.2
done
curl -fsS "http://$LISTEN/healthz" >/dev/null || fail "weir server did not become healthy; see $DATA_DIR/weir-server.log"

KEY_FILE="$DATA_DIR/initial-key.json"
[[ -f "$KEY_FILE" ]] || fail "$KEY_FILE was not created"
export WEIR_ENDPOINT="http://$LISTEN"
WEIR_PROJECT_ID="$(json_field project_id <"$KEY_FILE")"
WEIR_ACCESS_KEY="$(json_field access_key <"$KEY_FILE")"
WEIR_SECRET_KEY="$(json_field secret_key <"$KEY_FILE")"
export WEIR_PROJECT_ID WEIR_ACCESS_KEY WEIR_SECRET_KEY
say "using the initial API key of project $WEIR_PROJECT_ID from $KEY_FILE"

INSTANCE_ID="$(weir instance add --project "$WEIR_PROJECT_ID" --name quickstart-kafka \
    --bootstrap-servers "$BOOTSTRAP" | json_field instance_id)"
say "registered instance $INSTANCE_ID"

weir connector create --instance "$INSTANCE_ID" >/dev/null
say "enabling Smart Connect (2 nodes)"
status=""
for _ in $(seq 300); do
    status="$(weir instance show "$INSTANCE_ID" | json_field status)"
    [[ "$status" == "RUNNING" ]] && break
    sleep 0.5
done
[[ "$status" == "RUNNING" ]] || fail "instance is $status, not RUNNING, after 150 s"

TASK_FILE="$DATA_DIR/task.json"
cat >"$TASK_FILE" <<EOF
{
  "task_name": "quickstart-flights",
  "topics": "$TOPIC",
  "source_type": "NONE",
  "sink_type": "OBS_SINK",
  "sink_task": {
    "consumer_strategy": "earliest",
    "destination_file_type": "TEXT",
    "deliver_time_interval": 30,
    "access_key": "local",
    "secret_key": "local",
    "obs_bucket_name": "$BUCKET",
    "obs_path": "nyc",
    "partition_format": "yyyy/MM/dd",
    "record_delimiter": "\\n",
    "store_keys": false
  }
}
EOF

say "producing the flights to topic $TOPIC"
PRODUCED="$(PYTHONPATH="$REPO_ROOT/tests/integration" "$PYTHON" - "$BOOTSTRAP" "$TOPIC" <<'EOF'
import sys

from harness.flights import load_flights
from harness.kafka import Kafka

bootstrap, topic = sys.argv[1:3]
kafka = Kafka(bootstrap)
kafka.create_topic(topic, 3)
flights = load_flights()
produced = kafka.produce(topic, ((f.key, f.value, f.timestamp_ms) for f in flights))
print(sum(len(records) for records in produced.values()))
EOF
)"
say "produced $PRODUCED records"

TASK_ID="$(weir task create --instance "$INSTANCE_ID" --file "$TASK_FILE" | json_field id)"
say "created task $TASK_ID; waiting for every record to be in an object (chunks close after 30 s)"

BUCKET_DIR="$DATA_DIR/buckets/$BUCKET"
count_records() {
    # Each record is one compact JSON line, so records = lines in the objects.
    if [[ -d "$BUCKET_DIR" ]]; then
        find "$BUCKET_DIR" -name '*.txt' -type f -print0 | xargs -0 -r cat | wc -l
    else
        echo 0
    fi
}
found=0
deadline=$((SECONDS + WAIT_SECONDS))
while ((SECONDS < deadline)); do
    found="$(count_records)"
    ((found >= PRODUCED)) && break
    sleep 5
done

say "objects in $BUCKET_DIR:"
if [[ -d "$BUCKET_DIR" ]]; then
    find "$BUCKET_DIR" -name '*.txt' -type f | sed "s|^$BUCKET_DIR/|  |" | sort
fi
say "records found in objects: $found; records produced: $PRODUCED"
if ((found != PRODUCED)); then
    fail "the objects do not hold exactly the produced records"
fi
say "done; the objects stay in $BUCKET_DIR"
