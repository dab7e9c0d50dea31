#!/usr/bin/env bash
# Installs schemathesis (a schema-driven API fuzzer, from PyPI) into a venv under
# target/, for the OpenAPI test of osa-server. Idempotent. The last line on stdout is
# the path of its `st` command; progress goes to stderr.
#
# Usage: scripts/schemathesis-setup.sh
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${OSA_SCHEMATHESIS_VENV:-"$(pwd)/target/st-venv"}
VERSION=4.32.5

if ! "$VENV/bin/st" --version 2>/dev/null | grep -q "version $VERSION\$"; then
    printf 'schemathesis-setup: installing schemathesis %s into %s\n' "$VERSION" "$VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$VERSION" >&2
fi
echo "$VENV/bin/st"
