#!/usr/bin/env bash
# Makes the bwrap sandbox of the process runner available: installs bubblewrap with
# apt-get when `bwrap` is missing, then checks that it can create its namespaces here.
# Idempotent. Exits non-zero, saying why, when the sandbox cannot work on this machine.
# Usage: scripts/sandbox-setup.sh
set -euo pipefail

die() { printf 'sandbox-setup: %s\n' "$*" >&2; exit 1; }

if ! command -v bwrap >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 \
        || die "bwrap is missing and apt-get is not available; install bubblewrap with this system's package manager"
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "installing bubblewrap needs root (or sudo)"
        SUDO=(sudo)
    fi
    echo "sandbox-setup: installing bubblewrap"
    "${SUDO[@]}" apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq bubblewrap \
        || die "apt-get install bubblewrap failed"
    command -v bwrap >/dev/null 2>&1 || die "bubblewrap installed but bwrap is not on PATH"
fi

# The same probe the runner uses (Sandbox::check): every namespace, read-only root.
if ! output=$(bwrap --unshare-all --die-with-parent --ro-bind / / true 2>&1); then
    die "bwrap ($(command -v bwrap)) cannot create its sandbox here: ${output:-no output}
user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone=1,
user.max_user_namespaces > 0) or this container lacks the privileges to create them"
fi
echo "sandbox-setup: $(bwrap --version) works ($(command -v bwrap))"
