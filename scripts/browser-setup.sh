#!/usr/bin/env bash
# Makes a headless Chromium available for the tests of OSA's web page
# (examples/server/tests/dashboard.rs): installs the Debian `chromium` package with
# apt-get when no Chromium is on PATH. Prints the browser's path as its last line.
set -euo pipefail

find_browser() {
    local name
    for name in chromium chromium-browser google-chrome; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return 0
        fi
    done
    return 1
}

if ! find_browser >/dev/null; then
    echo "browser-setup: installing chromium (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq >&2
    $SUDO apt-get install -y -qq --no-install-recommends chromium >&2
fi
BROWSER=$(find_browser) || { echo "browser-setup: no Chromium after the install" >&2; exit 1; }
"$BROWSER" --version >&2
echo "$BROWSER"
