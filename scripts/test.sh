#!/usr/bin/env bash
# The one test command of OSA: prepares what the tests need, then runs format, lint,
# docs and every test suite. Usage: scripts/test.sh
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
LOG_DIR=${OSA_TEST_LOG_DIR:-"$ROOT/target/test-logs"}
mkdir -p "$LOG_DIR"
PASSED=0
FAILED=0

step() { printf '\n==> %s\n' "$*"; }
die() { printf '\nerror: %s\n' "$*" >&2; exit 1; }

# Runs a cargo test invocation, echoing its output and adding its counts to the total.
run_cargo_tests() {
    local name=$1
    shift
    local log="$LOG_DIR/$name.log"
    local status=0
    cargo test "$@" 2>&1 | tee "$log" || status=$?
    local counts
    counts=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed/) p += $(i-1); if ($(i) ~ /^failed/) f += $(i-1) } }
                  END { print p + 0, f + 0 }' "$log")
    PASSED=$((PASSED + ${counts% *}))
    FAILED=$((FAILED + ${counts#* }))
    [ "$status" -eq 0 ] || die "cargo test ($name) failed"
}

# Adds the counts of pytest logs to the total, printing each log's summary line.
add_pytest_counts() {
    local log counts
    for log in "$@"; do
        counts=$(awk '/ passed/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed/) p += $(i-1); if ($(i) ~ /^failed/) f += $(i-1) } }
                      END { print p + 0, f + 0 }' "$log")
        PASSED=$((PASSED + ${counts% *}))
        FAILED=$((FAILED + ${counts#* }))
        echo "$(basename "$log" .log): $(grep -E '[0-9]+ passed' "$log" | tail -n1)"
    done
}

# A run builds once from a clean tree: incremental state would only cost disk.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}

step "toolchain"
command -v cargo >/dev/null || die "cargo is required (https://rustup.rs)"
cargo --version
rustc --version

step "postgres"
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
pg_ready() { pg_isready -q -d "$DATABASE_URL" 2>/dev/null; }
if ! command -v pg_isready >/dev/null; then
    die "pg_isready not found: install the PostgreSQL client (apt-get install postgresql-client)"
fi
if ! pg_ready; then
    # A local cluster that stopped can be started again; anything else is reported.
    if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
        echo "Postgres is not answering at $DATABASE_URL; starting the local cluster"
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
        for _ in $(seq 1 20); do pg_ready && break; sleep 0.5; done
    fi
fi
pg_ready || die "Postgres is not reachable at $DATABASE_URL; start it or set DATABASE_URL"
echo "Postgres reachable at $DATABASE_URL"

step "format"
cargo fmt --all --check
# The repository explains itself: no file cites a design document it does not ship.
if git grep -n "DESIGN §" -- . ':!scripts/test.sh'; then
    die "the lines above cite a design document outside the repository"
fi

step "lint"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --workspace --all-features

step "sandbox (bubblewrap)"
scripts/sandbox-setup.sh

step "containers (podman)"
# Stop the Podman API service on every exit, also when a later step fails.
trap 'scripts/podman-setup.sh stop >/dev/null 2>&1 || true' EXIT
scripts/podman-setup.sh

step "object store (S3 test server)"
# moto's server, an S3-protocol test server from PyPI, in a venv under target/.
trap 'scripts/podman-setup.sh stop >/dev/null 2>&1 || true; scripts/s3-setup.sh stop >/dev/null 2>&1 || true' EXIT
OSA_S3_ENDPOINT=$(scripts/s3-setup.sh | tail -n1)
export OSA_S3_ENDPOINT
echo "S3 test server at $OSA_S3_ENDPOINT"

# The Python step comes first: the Rust end-to-end test of the example convention
# package runs its hooks with the wheel installed in this venv.
export OSA_PY_VENV=${OSA_PY_VENV:-"$ROOT/target/py-venv"}
step "python package (wheel, ruff, mypy, pytest)"
rm -f "$LOG_DIR"/pytest*.log
OSA_TEST_LOG_DIR="$LOG_DIR" scripts/python-tests.sh
add_pytest_counts "$LOG_DIR"/pytest*.log

step "the published SDK's own test suite, on OSA's wheel"
# osa-py 0.9.0's tests/ from its sdist (fetched, never committed) on 3.11 and 3.13; the
# gaps OSA has not closed are listed with their reasons in osa-py/tests/published/.
rm -f "$LOG_DIR"/published-sdk-*.log
OSA_TEST_LOG_DIR="$LOG_DIR" scripts/published-sdk-tests.sh
add_pytest_counts "$LOG_DIR"/published-sdk-*.log

step "python hook image (podman, no registry)"
# OSA's wheel and the example convention package in a local image, for the end-to-end
# test of the OCI runner with Python hooks (examples/server/tests/end_to_end.rs).
OSA_PY_WHEEL=$(ls "$ROOT"/target/wheels/osa_py-*-abi3-*.whl | head -n1) \
    scripts/python-image.sh examples/pdb-pockets

step "rust tests"
run_cargo_tests workspace --workspace --all-features

step "quickstart (the README's main job)"
cargo run -q -p osa --all-features --example quickstart | tee "$LOG_DIR/quickstart.log"
grep -q "run completed: 35 of 50 records accepted" "$LOG_DIR/quickstart.log" \
    || die "the quickstart did not end as the README shows"
grep -q "live now     v1" "$LOG_DIR/quickstart.log" || die "the quickstart stopped before the provenance"

step "stopping services"
scripts/podman-setup.sh stop || true
scripts/s3-setup.sh stop || true
trap - EXIT

step "summary"
printf '%s passed, %s failed\n' "$PASSED" "$FAILED"
[ "$FAILED" -eq 0 ]
