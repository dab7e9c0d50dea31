#!/usr/bin/env bash
# Starts the S3 test server of OSA's tests: moto's server (`moto[server]` from PyPI, an
# in-memory S3-protocol implementation; a test server, not a store to keep data in),
# installed into a venv under target/, listening on 127.0.0.1:$OSA_S3_PORT (default
# 9000), with the bucket $OSA_S3_BUCKET (default osa-test) created.
#
# Idempotent: a server already answering on the port is reused. The last line on stdout
# is the endpoint URL (http://127.0.0.1:9000); progress goes to stderr.
#
# Usage: scripts/s3-setup.sh [start]   install, start, create the bucket
#        scripts/s3-setup.sh stop      stops a server this script started
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
PORT=${OSA_S3_PORT:-9000}
BUCKET=${OSA_S3_BUCKET:-osa-test}
VENV=${OSA_S3_VENV:-"$ROOT/target/s3-venv"}
PID_FILE="$ROOT/target/s3-server.pid"
LOG_FILE="$ROOT/target/s3-server.log"
MOTO_VERSION=5.2.6
ENDPOINT="http://127.0.0.1:$PORT"

say() { printf 's3-setup: %s\n' "$*" >&2; }
die() { printf 's3-setup: error: %s\n' "$*" >&2; exit 1; }

answering() { curl -s -o /dev/null --max-time 2 "$ENDPOINT/" ; }

if [ "${1:-start}" = "stop" ]; then
    if [ -f "$PID_FILE" ]; then
        kill "$(cat "$PID_FILE")" 2>/dev/null || true
        rm -f "$PID_FILE"
        say "stopped"
    fi
    exit 0
fi

if ! answering; then
    if [ ! -x "$VENV/bin/moto_server" ] \
        || ! "$VENV/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
        say "installing moto[server]==$MOTO_VERSION into $VENV"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2
    fi
    mkdir -p "$(dirname "$PID_FILE")"
    say "starting moto_server on $ENDPOINT (log: $LOG_FILE)"
    # setsid: the server outlives this script (and the test that started it), until
    # `stop` or the end of the machine's session.
    setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$LOG_FILE" 2>&1 < /dev/null &
    echo $! >"$PID_FILE"
    for _ in $(seq 1 100); do
        answering && break
        sleep 0.1
    done
    answering || die "moto_server did not answer on $ENDPOINT (see $LOG_FILE)"
fi

# Create the bucket (moto accepts any credentials; an existing bucket answers 409/200).
status=$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$ENDPOINT/$BUCKET")
case "$status" in
    200|409) ;;
    *) die "creating bucket $BUCKET answered HTTP $status" ;;
esac
say "bucket $BUCKET ready"
echo "$ENDPOINT"
