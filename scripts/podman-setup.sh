#!/usr/bin/env bash
# Prepares what the OCI runner's tests and benchmarks need, without any registry:
#
#  1. installs podman and runc from Debian (apt-get) when missing (plus curl, used to
#     probe the API socket); `podman system service` is part of the podman package;
#  2. writes $STATE/containers.conf (STATE = $OSA_OCI_DIR, default target/oci) with the
#     settings this machine needs: runtime runc (crun fails here), explicit default
#     ulimits (the engine's defaults exceed the hard limits here), the cgroupfs
#     manager, file events and k8s-file logs (no systemd/journald). Every podman
#     command of this script, the service and the benchmarks run with
#     CONTAINERS_CONF pointing at it;
#  3. starts `podman system service --time=0 unix://$STATE/podman.sock` in the
#     background (pid in $STATE/podman.pid, log in $STATE/service.log) unless it is
#     already running, and waits until the socket answers /_ping;
#  4. builds the Rust test hook (examples/test_hook.rs) and imports a minimal rootfs
#     holding it (/hook, the shared libraries ldd lists, /etc/passwd and /etc/group
#     with nobody 65534) as localhost/osa-test-hook:latest with ENTRYPOINT ["/hook"]
#     (`podman import`, no registry). The import is skipped when an image with the
#     same content hash (label osa.test-hook.sha256) is already there;
#  5. records in $STATE/test-image.env (sourceable shell, read by the tests):
#       OSA_TEST_IMAGE=localhost/osa-test-hook
#       OSA_TEST_IMAGE_DIGEST=sha256:…   the manifest digest podman recorded at import:
#                                        `localhost/osa-test-hook@<it>` is the pinned
#                                        reference the OCI runner resolves. The image id
#                                        (OSA_TEST_IMAGE_ID, the config digest) does NOT
#                                        resolve in name@digest form.
#       OSA_TEST_IMAGE_ID, OSA_PODMAN_SOCKET, CONTAINERS_CONF, OSA_TEST_HOOK_BINARY
#  6. runs the image once (`podman run --rm` with the runner's hardening flags) and
#     fails, saying why, if podman cannot run a container here.
#
# Usage: scripts/podman-setup.sh [start]   everything above (idempotent)
#        scripts/podman-setup.sh stop      stops the API service started by start
#        scripts/podman-setup.sh status    says whether the service answers
#
# The test hook is built with `cargo build --workspace --all-features --example
# test_hook` (the dev profile and features scripts/test.sh tests with, so the build is
# shared with the test run); OSA_TEST_HOOK_PROFILE=release builds it optimised instead
# (for benchmarks), and OSA_TEST_HOOK=/path/to/binary skips the build.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
STATE=${OSA_OCI_DIR:-"$ROOT/target/oci"}
SOCK="$STATE/podman.sock"
PIDFILE="$STATE/podman.pid"
CONF="$STATE/containers.conf"
ENV_FILE="$STATE/test-image.env"
IMAGE=localhost/osa-test-hook

say() { printf 'podman-setup: %s\n' "$*"; }
die() { printf 'podman-setup: error: %s\n' "$*" >&2; exit 1; }

service_pid() {
    [ -f "$PIDFILE" ] || return 1
    local pid
    pid=$(cat "$PIDFILE")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    # Only our own service: the pid must still be `podman system service` on our socket.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "system service.*$SOCK" || return 1
    echo "$pid"
}

socket_answers() {
    [ -S "$SOCK" ] && [ "$(curl -s --max-time 2 --unix-socket "$SOCK" http://d/_ping 2>/dev/null)" = OK ]
}

stop_service() {
    local pid
    if pid=$(service_pid); then
        kill "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid" 2>/dev/null || true; fi
        say "stopped the API service (pid $pid)"
    else
        say "no API service of ours is running"
    fi
    rm -f "$PIDFILE" "$SOCK"
}

case "${1:-start}" in
    stop) stop_service; exit 0 ;;
    status)
        if socket_answers; then say "the API service answers at unix://$SOCK"; exit 0; fi
        say "the API service is not running"; exit 1 ;;
    start) ;;
    *) die "unknown command ${1}; usage: $0 [start|stop|status]" ;;
esac

# 1. Packages ---------------------------------------------------------------------
missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 \
        || die "${missing[*]} missing and apt-get is not available; install them with this system's package manager"
    SUDO=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "installing ${missing[*]} needs root (or sudo)"
        SUDO=(sudo)
    fi
    say "installing ${missing[*]}"
    "${SUDO[@]}" apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
fi
command -v podman >/dev/null 2>&1 || die "podman installed but not on PATH"
[ "$(id -u)" -eq 0 ] || say "warning: not root; podman runs rootless (the tests expect rootful: the hook's processes must be visible in this machine's /proc)"

# 2. containers.conf --------------------------------------------------------------
mkdir -p "$STATE"
cat >"$CONF.tmp" <<'EOF'
# Written by scripts/podman-setup.sh; used through CONTAINERS_CONF.
[containers]
# The engine's defaults (1048576) exceed this machine's hard limits: runc fails.
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
# No journald here.
log_driver = "k8s-file"

[engine]
# crun fails on this machine.
runtime = "runc"
# No systemd here.
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
mv "$CONF.tmp" "$CONF"
export CONTAINERS_CONF="$CONF"

# 3. API service ------------------------------------------------------------------
if socket_answers; then
    say "the API service already answers at unix://$SOCK"
else
    stop_service >/dev/null
    say "starting podman system service at unix://$SOCK"
    # From $STATE: conmon leaves files (an `oom` marker) in its working directory.
    (cd "$STATE" && exec nohup podman system service --time=0 "unix://$SOCK" \
        >"$STATE/service.log" 2>&1 </dev/null) &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 100); do socket_answers && break; sleep 0.1; done
    socket_answers || die "podman system service did not answer within 10 s; its log ($STATE/service.log):
$(tail -n 20 "$STATE/service.log" 2>/dev/null)"
fi

# 4. Test image -------------------------------------------------------------------
if [ -n "${OSA_TEST_HOOK:-}" ]; then
    HOOK=$OSA_TEST_HOOK
else
    profile_flag=()
    [ "${OSA_TEST_HOOK_PROFILE:-dev}" = release ] && profile_flag=(--release)
    say "building the Rust test hook (cargo build ${profile_flag[*]} --example test_hook)"
    HOOK=$(cargo build -q "${profile_flag[@]}" --workspace --all-features --example test_hook \
            --message-format=json-render-diagnostics \
        | grep -o '"executable":"[^"]*test_hook"' | tail -n 1 | sed 's/^"executable":"//; s/"$//') \
        || die "building the test hook failed"
fi
[ -x "$HOOK" ] || die "the test hook binary ${HOOK:-<none>} is missing"

ROOTFS="$STATE/rootfs"
rm -rf "$ROOTFS"
mkdir -p "$ROOTFS"/{etc,tmp,proc,dev,sys,usr,osa}
cp "$HOOK" "$ROOTFS/hook"
# The loader and every library, at the paths the binary looks them up under.
for lib in $(ldd "$HOOK" | grep -o '/[^ ]*'); do
    mkdir -p "$ROOTFS$(dirname "$lib")"
    cp -L "$lib" "$ROOTFS$lib"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n' >"$ROOTFS/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ROOTFS/etc/group"
chmod 1777 "$ROOTFS/tmp"
HASH=$(cd "$ROOTFS" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)

current=$(podman image inspect "$IMAGE:latest" --format '{{index .Labels "osa.test-hook.sha256"}}' 2>/dev/null || true)
if [ "$current" = "$HASH" ]; then
    say "$IMAGE:latest is up to date"
else
    previous=$(podman image inspect "$IMAGE:latest" --format '{{.Id}}' 2>/dev/null || true)
    say "importing $IMAGE:latest"
    tar -C "$ROOTFS" --numeric-owner --owner=0 --group=0 -c . \
        | podman import --quiet --change 'ENTRYPOINT ["/hook"]' --change "LABEL osa.test-hook.sha256=$HASH" \
            - "$IMAGE:latest" >/dev/null \
        || die "podman import failed"
    # The image the tag moved away from (untagged now); kept if a container uses it.
    [ -z "$previous" ] || podman rmi "$previous" >/dev/null 2>&1 || true
fi
DIGEST=$(podman image inspect "$IMAGE:latest" --format '{{.Digest}}')
ID=$(podman image inspect "$IMAGE:latest" --format '{{.Id}}')
[[ "$DIGEST" == sha256:* ]] || die "podman recorded no manifest digest for $IMAGE ($DIGEST)"
cat >"$ENV_FILE.tmp" <<EOF
# Written by scripts/podman-setup.sh. Pinned reference: \$OSA_TEST_IMAGE@\$OSA_TEST_IMAGE_DIGEST
OSA_TEST_IMAGE=$IMAGE
OSA_TEST_IMAGE_DIGEST=$DIGEST
OSA_TEST_IMAGE_ID=sha256:${ID#sha256:}
OSA_PODMAN_SOCKET=$SOCK
CONTAINERS_CONF=$CONF
OSA_TEST_HOOK_BINARY=$HOOK
EOF
mv "$ENV_FILE.tmp" "$ENV_FILE"

# 5. Probe: can podman run a container here, hardened as the runner does? ----------
if ! output=$(podman run --rm --user 65534:65534 --network none --read-only --cap-drop ALL \
        --security-opt no-new-privileges --pids-limit 256 --memory 64m --memory-swap 64m \
        --cpus 0.5 --tmpfs /tmp:rw,noexec,nosuid,size=100m \
        "$IMAGE@$DIGEST" --sleeper osa-podman-probe 0 2>&1); then
    die "podman cannot run a container here: ${output:-no output}
(config: $CONF; runtime: $(command -v runc || echo 'runc missing'))"
fi
say "podman $(podman version --format '{{.Client.Version}}') runs $IMAGE@$DIGEST; API at unix://$SOCK"
say "wrote $ENV_FILE"
