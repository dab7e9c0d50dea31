#!/usr/bin/env bash
# Builds the `osa` wheel (osa-py, abi3) and tests it: ruff, the native stub check and the
# pytest suite, against the installed wheel; then the example convention package
# examples/pdb-pockets, installed next to the wheel (ruff, mypy, its own tests). The venv
# it leaves is the one tests/sdk_package.rs (cargo test) needs. Idempotent; safe to re-run.
#
# Usage: scripts/python-tests.sh
# Environment:
#   PYTHON                       interpreter for the main venv (default python3, >= 3.11)
#   CARGO_TARGET_DIR             honoured by the wheel build (default: cargo's own)
#   OSA_PY_VENV                  venv directory (default target/py-venv)
#   OSA_UPDATE_CONTRACT_FIXTURE  1 = rewrite osa-py/tests/fixtures/contract outputs
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
PYTHON=${PYTHON:-python3}
VENV=${OSA_PY_VENV:-"$ROOT/target/py-venv"}
WHEELS="$ROOT/target/wheels"
EXAMPLE="$ROOT/examples/pdb-pockets"
LOG_DIR=${OSA_TEST_LOG_DIR:-"$ROOT/target/test-logs"}
# ziglang: the linker maturin uses for a manylinux2014 wheel that installs on any
# glibc >= 2.17 machine.
TOOLS=(maturin ziglang pytest "pydantic>=2" "httpx>=0.27" ruff mypy hatchling)
# The published SDK the example package is also tested on (Python >= 3.13).
PUBLISHED_SDK="osa-py==0.9.0"

step() { printf '\n==> %s\n' "$*"; }
die() { printf '\nerror: %s\n' "$*" >&2; exit 1; }

# Creates a venv (if missing) with the given interpreter and installs packages into it.
make_venv() {
    local python=$1 venv=$2
    shift 2
    if [ ! -x "$venv/bin/python" ]; then
        "$python" -m venv "$venv"
        "$venv/bin/python" -m pip install -q --upgrade pip
    fi
    "$venv/bin/python" -m pip install -q "$@"
}

# Installs the freshly built wheel and the sample convention package into a venv. The
# osa-py suite expects exactly the sample's conventions, so the example package (left
# by an earlier run) is removed until install_example puts it back.
install_packages() {
    local venv=$1
    "$venv/bin/python" -m pip uninstall -q -y osa-pdb-pockets
    "$venv/bin/python" -m pip install -q --force-reinstall --no-deps "$WHEEL"
    "$venv/bin/python" -m pip install -q --force-reinstall --no-deps --no-build-isolation \
        "$ROOT/osa-py/tests/sample_convention"
}

# Installs the example convention package next to the wheel; `pip check` proves that its
# dependency on `osa-py` is met by the wheel.
install_example() {
    local venv=$1
    "$venv/bin/python" -m pip install -q --force-reinstall --no-deps --no-build-isolation \
        "$EXAMPLE"
    "$venv/bin/python" -m pip check
}

# Runs pytest in a directory with the given arguments; fails on any failure and on zero
# tests run.
run_pytest() {
    local venv=$1 dir=$2 log=$3
    shift 3
    local status=0
    (cd "$dir" && "$venv/bin/python" -m pytest "$@") 2>&1 | tee "$log" || status=$?
    [ "$status" -eq 0 ] || die "pytest failed (exit $status; 5 means no test was collected)"
    grep -Eq '[1-9][0-9]* passed' "$log" || die "pytest ran no test"
}

mkdir -p "$LOG_DIR" "$WHEELS"

step "python"
command -v "$PYTHON" >/dev/null || die "$PYTHON is required"
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
    || die "$PYTHON must be Python 3.11 or newer"
"$PYTHON" --version

step "venv ($VENV)"
make_venv "$PYTHON" "$VENV" "${TOOLS[@]}"

step "wheel (manylinux2014, abi3) and sdist"
rm -f "$WHEELS"/osa_py-*.whl "$WHEELS"/osa_py-*.tar.gz
(cd osa-py && PATH="$VENV/bin:$PATH" "$VENV/bin/maturin" build --release --zig \
    --compatibility manylinux2014 -o "$WHEELS")
(cd osa-py && "$VENV/bin/maturin" sdist -o "$WHEELS")
shopt -s nullglob
BUILT=("$WHEELS"/osa_py-*-abi3-*.whl)
shopt -u nullglob
[ "${#BUILT[@]}" -eq 1 ] || die "expected one abi3 wheel in $WHEELS, found ${#BUILT[@]}"
WHEEL=${BUILT[0]}
install_packages "$VENV"

step "ruff"
(cd osa-py && "$VENV/bin/ruff" check python tests && "$VENV/bin/ruff" format --check python tests)

step "mypy --strict (the package, against the _native.pyi stub)"
(cd osa-py && "$VENV/bin/mypy" --strict --no-incremental python/osa)

step "pytest (python $("$VENV/bin/python" -c 'import platform; print(platform.python_version())'))"
OSA_WHEEL_DIR="$WHEELS" run_pytest "$VENV" "$ROOT/osa-py" "$LOG_DIR/pytest.log" tests -q

step "example convention package (examples/pdb-pockets): ruff, mypy --strict, pytest"
install_example "$VENV"
(cd "$EXAMPLE" && "$VENV/bin/ruff" check src tests && "$VENV/bin/ruff" format --check src tests)
(cd "$EXAMPLE" && "$VENV/bin/mypy" --strict --no-incremental src tests)
run_pytest "$VENV" "$EXAMPLE" "$LOG_DIR/pytest-pdb-pockets.log" tests -q

# The wheel is abi3: where Python 3.13 is available, check it there too (types.UnionType
# spellings of optional types are the reason).
shopt -s nullglob
PY313=("$HOME"/.pyenv/versions/3.13*/bin/python3)
shopt -u nullglob
if [ "${#PY313[@]}" -gt 0 ]; then
    VENV313="${VENV}-3.13"
    step "pytest under ${PY313[-1]}"
    make_venv "${PY313[-1]}" "$VENV313" pytest "pydantic>=2" "httpx>=0.27" hatchling
    install_packages "$VENV313"
    run_pytest "$VENV313" "$ROOT/osa-py" "$LOG_DIR/pytest-3.13.log" tests -q \
        --deselect tests/test_runtime.py::test_memory_stays_flat_for_100k_records \
        --deselect tests/test_wheel_install.py
    install_example "$VENV313"
    run_pytest "$VENV313" "$EXAMPLE" "$LOG_DIR/pytest-pdb-pockets-3.13.log" tests -q

    # The example uses only the published SDK's API: its tests pass on that SDK too.
    VENV_PUBLISHED="${VENV}-published"
    step "example package against the published SDK ($PUBLISHED_SDK)"
    make_venv "${PY313[-1]}" "$VENV_PUBLISHED" "$PUBLISHED_SDK" pytest hatchling
    install_example "$VENV_PUBLISHED"
    run_pytest "$VENV_PUBLISHED" "$EXAMPLE" "$LOG_DIR/pytest-pdb-pockets-published.log" tests -q
else
    step "python 3.13 not found under ~/.pyenv/versions: skipping the 3.13 run"
fi

step "python tests passed"
