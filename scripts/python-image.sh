#!/usr/bin/env bash
# Builds, without any image registry, a local OCI image that runs Python hooks the way
# the OCI runner runs them: OSA's wheel (distribution `osa-py`) and the given convention
# packages installed in a venv at /opt/osa, ENTRYPOINT ["/opt/osa/bin/osa-run-hook"].
#
#  1. needs what scripts/podman-setup.sh prepares (it is run when
#     $STATE/containers.conf is missing; STATE = $OSA_OCI_DIR, default target/oci); every
#     podman command runs with CONTAINERS_CONF pointing at that file;
#  2. base: a Debian bookworm rootfs made by `debootstrap --variant=minbase` with
#     python3 (3.11, the wheel's minimum) and python3-venv, trimmed (no docs, man pages,
#     locales, apt lists or caches), kept as $STATE/python-base-bookworm.tar so later runs
#     skip debootstrap (delete the file to make it again; debootstrap is installed with
#     apt-get when missing). It is imported (`podman import`) as
#     localhost/osa-python-base:bookworm, skipped when the image's label
#     osa.python-base.sha256 already matches the tarball;
#  3. the wheel: `maturin build --release` of osa-py into target/wheels (for this
#     machine's glibc; scripts/python-tests.sh builds the manylinux2014 one, and
#     scripts/test.sh hands that one over through OSA_PY_WHEEL),
#     with the maturin of target/py-venv ($OSA_PY_VENV) when there is one, else of a
#     venv of its own ($STATE/maturin-venv). OSA_PY_WHEEL=/path/to/osa_py-….whl uses
#     that wheel instead;
#  4. `podman build --network host` (no registry: FROM is the base above, pinned by
#     digest) of a Containerfile that creates the venv and pip-installs the wheel and
#     the packages. pip resolves `osa-py` to OSA's wheel (given as a file, found
#     through --find-links; the installed version is checked against the wheel's), and
#     takes only third-party dependencies (pydantic, …) and build backends (hatchling)
#     from PyPI; `pip check` must pass. The image is tagged
#     localhost/osa-python-hook:latest and labelled osa.python-hook.sha256, a hash of
#     the base tarball, the wheel's contents, the packages' sources and the
#     Containerfile: the build is skipped when an image with that label is already
#     there. Third-party versions are whatever PyPI resolved at build time (not part of
#     the hash). Image settings: USER 65534:65534, WORKDIR /tmp, ENV PATH (venv first),
#     OSA_IN/OSA_OUT/OSA_FILES at /osa/{in,out,files} (mount points exist in the image),
#     PYTHONDONTWRITEBYTECODE=1 (the rootfs is read-only at run time; pip compiled the
#     bytecode at install);
#  5. smoke test, with the runner's hardening flags (read-only rootfs, no network, user
#     65534, all capabilities dropped, no-new-privileges, pids/memory/cpu limits, a
#     noexec /tmp tmpfs, in/ and files/ bound read-only, out/ read-write) and its
#     environment (OSA_IN, OSA_OUT, OSA_FILES, OSA_HOOK_NAME, HOME=/tmp): lists the
#     registered hooks; runs each over a one-record batch ({"id":"r1",…}) and requires
#     exit 0 and exactly one outcome line; runs each over the sample batch a package
#     ships as src/*/samples/{in/records.jsonl,files/} (examples/pdb-pockets does) and
#     requires one outcome per record and at least one feature or rejection line in
#     all. With no package (no hook), it requires osa-run-hook to start and refuse,
#     naming the missing hook. Any failure stops the script, saying why.
#  6. records, once the smoke test passed, in $STATE/python-image.env (sourceable shell):
#       OSA_PYTHON_IMAGE=localhost/osa-python-hook
#       OSA_PYTHON_IMAGE_DIGEST=sha256:…  the manifest digest podman recorded for the
#                                         image: `localhost/osa-python-hook@<it>` is
#                                         the pinned reference the OCI runner resolves
#                                         (the image id does not resolve in that form)
#       OSA_PYTHON_IMAGE_ID, OSA_PYTHON_HOOKS (names of the registered hooks),
#       OSA_PYTHON_WHEEL, OSA_PYTHON_BASE (the pinned base image, for builds such as
#       `osa deploy`'s), CONTAINERS_CONF
#
# Usage: scripts/python-image.sh [PACKAGE_DIR ...]
#   e.g. scripts/python-image.sh examples/pdb-pockets
# Progress goes to stderr; the last line on stdout is the pinned reference
# localhost/osa-python-hook@sha256:….
#
# The runner tells osa-run-hook which hook to run through OSA_HOOK_NAME (the hook's
# function name, e.g. detect_pockets); unset, it runs the only registered hook.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
STATE=${OSA_OCI_DIR:-"$ROOT/target/oci"}
CONF="$STATE/containers.conf"
ENV_FILE="$STATE/python-image.env"
WHEELS="$ROOT/target/wheels"
SUITE=bookworm
MIRROR=${OSA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_TAR="$STATE/python-base-$SUITE.tar"
BASE_IMAGE=localhost/osa-python-base
IMAGE=localhost/osa-python-hook
BUILD="$STATE/python-image"
# Limits of the smoke runs (the runner's come from each hook's limits).
SMOKE_MEMORY=512m
SMOKE_CPUS=1

say() { printf 'python-image: %s\n' "$*" >&2; }
die() { printf 'python-image: error: %s\n' "$*" >&2; exit 1; }

# sha256 of a directory tree: every file's path and content, in a stable order.
tree_hash() {
    (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum | sha256sum | cut -d' ' -f1)
}

# Installs Debian packages with apt-get (root or sudo), like scripts/podman-setup.sh.
apt_install() {
    command -v apt-get >/dev/null 2>&1 \
        || die "$* missing and apt-get is not available; install them with this system's package manager"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "installing $* needs root (or sudo)"
        sudo=(sudo)
    fi
    say "installing $*"
    if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
            "$@" >/dev/null 2>&1; then
        "${sudo[@]}" apt-get update -qq || die "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
            "$@" >/dev/null || die "apt-get install $* failed"
    fi
}

# 0. Arguments ------------------------------------------------------------------------
PACKAGES=()
for dir in "$@"; do
    [ -d "$dir" ] || die "$dir is not a directory (usage: $0 [PACKAGE_DIR ...])"
    [ -f "$dir/pyproject.toml" ] || [ -f "$dir/setup.py" ] \
        || die "$dir is not a Python package directory (no pyproject.toml or setup.py)"
    PACKAGES+=("$(cd "$dir" && pwd)")
done

# 1. Podman ---------------------------------------------------------------------------
if [ ! -f "$CONF" ] || ! command -v podman >/dev/null 2>&1; then
    say "$CONF is missing: running scripts/podman-setup.sh"
    "$ROOT/scripts/podman-setup.sh" >&2 || die "scripts/podman-setup.sh failed"
fi
[ -f "$CONF" ] || die "scripts/podman-setup.sh wrote no $CONF"
export CONTAINERS_CONF="$CONF"

# 2. Base rootfs and image ------------------------------------------------------------
if [ ! -f "$BASE_TAR" ]; then
    [ "$(id -u)" -eq 0 ] || die "making the base rootfs with debootstrap needs root (or a prepared $BASE_TAR)"
    command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
    tmp_root="$STATE/python-base.tmp"
    rm -rf "$tmp_root" "$BASE_TAR.tmp"
    mkdir -p "$STATE"
    say "making a Debian $SUITE rootfs with python3 (debootstrap from $MIRROR; about a minute)"
    if ! debootstrap --variant=minbase --include=python3,python3-venv "$SUITE" "$tmp_root" "$MIRROR" \
            >"$STATE/debootstrap.log" 2>&1; then
        die "debootstrap failed; its log ($STATE/debootstrap.log):
$(tail -n 20 "$STATE/debootstrap.log")"
    fi
    chroot "$tmp_root" python3 -c 'import sys; assert sys.version_info >= (3, 11), sys.version' \
        || die "the $SUITE rootfs has no python3 >= 3.11"
    # Nothing a hook needs: docs, man pages, translations, apt's lists and caches.
    rm -rf "$tmp_root"/usr/share/{doc,man,info,locale,lintian,linda} \
        "$tmp_root"/var/cache/apt/* "$tmp_root"/var/lib/apt/lists/* "$tmp_root"/var/log/* \
        "$tmp_root"/debootstrap
    mkdir -p "$tmp_root"/usr/share/doc "$tmp_root"/var/lib/apt/lists/partial
    tar -C "$tmp_root" --numeric-owner --sort=name -cf "$BASE_TAR.tmp" . || die "cannot write $BASE_TAR"
    mv "$BASE_TAR.tmp" "$BASE_TAR"
    rm -rf "$tmp_root"
    say "cached the base rootfs as $BASE_TAR ($(du -h "$BASE_TAR" | cut -f1))"
fi
BASE_HASH=$(sha256sum "$BASE_TAR" | cut -d' ' -f1)

current=$(podman image inspect "$BASE_IMAGE:$SUITE" --format '{{index .Labels "osa.python-base.sha256"}}' 2>/dev/null || true)
if [ "$current" = "$BASE_HASH" ]; then
    say "$BASE_IMAGE:$SUITE is up to date"
else
    previous=$(podman image inspect "$BASE_IMAGE:$SUITE" --format '{{.Id}}' 2>/dev/null || true)
    say "importing $BASE_IMAGE:$SUITE"
    podman import --quiet --change 'CMD ["/usr/bin/python3"]' \
        --change "LABEL osa.python-base.sha256=$BASE_HASH" \
        "$BASE_TAR" "$BASE_IMAGE:$SUITE" >/dev/null || die "podman import of $BASE_TAR failed"
    [ -z "$previous" ] || podman rmi "$previous" >/dev/null 2>&1 || true
fi
BASE_DIGEST=$(podman image inspect "$BASE_IMAGE:$SUITE" --format '{{.Digest}}')
[[ "$BASE_DIGEST" == sha256:* ]] || die "podman recorded no manifest digest for $BASE_IMAGE ($BASE_DIGEST)"

# 3. Wheel ----------------------------------------------------------------------------
if [ -n "${OSA_PY_WHEEL:-}" ]; then
    WHEEL=$OSA_PY_WHEEL
else
    venv=${OSA_PY_VENV:-"$ROOT/target/py-venv"}
    if [ -x "$venv/bin/maturin" ]; then
        MATURIN="$venv/bin/maturin"
    else
        venv="$STATE/maturin-venv"
        MATURIN="$venv/bin/maturin"
        if [ ! -x "$MATURIN" ]; then
            say "creating $venv with maturin"
            rm -rf "$venv"
            python3 -m venv "$venv" || die "python3 -m venv $venv failed"
            "$venv/bin/python" -m pip install -q --disable-pip-version-check "maturin>=1.9.4,<2" >&2 \
                || die "pip install maturin failed"
        fi
    fi
    say "building the osa-py wheel (maturin build --release; minutes the first time)"
    mkdir -p "$WHEELS"
    rm -f "$WHEELS"/osa_py-*.whl
    (cd "$ROOT/osa-py" && "$MATURIN" build --release --quiet -o "$WHEELS") >&2 \
        || die "building the wheel failed (maturin build --release in osa-py)"
    shopt -s nullglob
    built=("$WHEELS"/osa_py-*-abi3-*.whl)
    shopt -u nullglob
    [ "${#built[@]}" -eq 1 ] || die "expected one abi3 wheel in $WHEELS, found ${#built[@]}"
    WHEEL=${built[0]}
fi
[ -f "$WHEEL" ] || die "the wheel $WHEEL is missing"
WHEEL=$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")
WHEEL_NAME=$(basename "$WHEEL")
WHEEL_VERSION=$(printf '%s\n' "$WHEEL_NAME" | cut -d- -f2)
case "$WHEEL_NAME" in
    osa_py-*-abi3-*.whl) ;;
    *) die "$WHEEL_NAME is not an abi3 wheel of osa-py" ;;
esac

# 4. Image ----------------------------------------------------------------------------
# The build context: the wheel, a clean copy of each package and the Containerfile.
CONTEXT="$BUILD/context"
rm -rf "$CONTEXT"
mkdir -p "$CONTEXT/wheels" "$CONTEXT/src"
cp "$WHEEL" "$CONTEXT/wheels/"
pkg_args=()
n=0
for pkg in "${PACKAGES[@]}"; do
    n=$((n + 1))
    name="$n-$(basename "$pkg")"
    mkdir -p "$CONTEXT/src/$name"
    # Without caches, VCS data and build outputs (build/ and dist/ at the top only).
    tar -C "$pkg" --exclude=.git --exclude=__pycache__ --exclude='*.pyc' --exclude=.venv \
        --exclude=.pytest_cache --exclude=.mypy_cache --exclude=.ruff_cache \
        --exclude='*.egg-info' --anchored --exclude=./build --exclude=./dist \
        -cf - . | tar -C "$CONTEXT/src/$name" -xf - || die "cannot copy $pkg"
    pkg_args+=("/tmp/osa-build/src/$name")
done
# pip inside the build trusts the CAs this machine's pip trusts (a TLS-intercepting
# proxy's among them): the bundle is in the context, bound for the RUN only, never in
# the image.
pip_cert=""
ca_bundle=${PIP_CERT:-${REQUESTS_CA_BUNDLE:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}}
if [ -f "$ca_bundle" ]; then
    cp "$ca_bundle" "$CONTEXT/ca-bundle.crt"
    pip_cert="PIP_CERT=/tmp/osa-build/ca-bundle.crt "
fi
cat >"$CONTEXT/Containerfile" <<EOF
# Written by scripts/python-image.sh.
FROM $BASE_IMAGE@$BASE_DIGEST
RUN --mount=type=bind,source=.,target=/tmp/osa-build,rw \\
    python3 -m venv /opt/osa \\
    && ${pip_cert}/opt/osa/bin/python -m pip install --no-cache-dir --disable-pip-version-check \\
        --root-user-action=ignore --find-links /tmp/osa-build/wheels \\
        /tmp/osa-build/wheels/$WHEEL_NAME ${pkg_args[*]} \\
    && /opt/osa/bin/python -m pip check --disable-pip-version-check \\
    && test "\$(/opt/osa/bin/python -c 'import importlib.metadata as m; print(m.version("osa-py"))')" = "$WHEEL_VERSION" \\
    && /opt/osa/bin/python -c 'import osa._native, osa.runtime.entrypoint' \\
    && mkdir -p /osa/in /osa/out /osa/files
ENV PATH=/opt/osa/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    VIRTUAL_ENV=/opt/osa \\
    LANG=C.UTF-8 \\
    PYTHONDONTWRITEBYTECODE=1 \\
    OSA_IN=/osa/in \\
    OSA_OUT=/osa/out \\
    OSA_FILES=/osa/files
WORKDIR /tmp
USER 65534:65534
ENTRYPOINT ["/opt/osa/bin/osa-run-hook"]
EOF
# The wheel's contents, not its bytes: maturin stamps the zip entries and the SBOM
# (dist-info/sboms) with the build time, and RECORD lists the SBOM's hash.
WHEEL_HASH=$(python3 - "$WHEEL" <<'PY'
import hashlib, re, sys, zipfile
h = hashlib.sha256()
with zipfile.ZipFile(sys.argv[1]) as z:
    for name in sorted(z.namelist()):
        if re.search(r"\.dist-info/(RECORD$|sboms/)", name):
            continue
        h.update(name.encode() + b"\0" + hashlib.sha256(z.read(name)).digest())
print(h.hexdigest())
PY
) || die "cannot read the wheel $WHEEL"
HASH=$(printf '%s\n' "$BASE_HASH" "$WHEEL_HASH" "$(tree_hash "$CONTEXT/src")" \
    "$(sha256sum <"$CONTEXT/Containerfile")" | sha256sum | cut -d' ' -f1)

current=$(podman image inspect "$IMAGE:latest" --format '{{index .Labels "osa.python-hook.sha256"}}' 2>/dev/null || true)
if [ "$current" = "$HASH" ]; then
    say "$IMAGE:latest is up to date"
else
    say "building $IMAGE:latest (pip install $WHEEL_NAME${PACKAGES[*]:+ and ${PACKAGES[*]#"$ROOT/"}}; PyPI for third-party dependencies)"
    if ! podman build --pull=never --network host --layers=false --quiet \
            --label "osa.python-hook.sha256=$HASH" \
            --label "osa.python-hook.wheel=$WHEEL_NAME" \
            -t "$IMAGE:latest" -f "$CONTEXT/Containerfile" "$CONTEXT" \
            >"$BUILD/build.log" 2>&1; then
        die "podman build failed; its log ($BUILD/build.log):
$(tail -n 30 "$BUILD/build.log")"
    fi
fi
DIGEST=$(podman image inspect "$IMAGE:latest" --format '{{.Digest}}')
ID=$(podman image inspect "$IMAGE:latest" --format '{{.Id}}')
[[ "$DIGEST" == sha256:* ]] || die "podman recorded no manifest digest for $IMAGE ($DIGEST)"
PINNED="$IMAGE@$DIGEST"
resolved=$(podman image inspect "$PINNED" --format '{{.Id}}' 2>/dev/null || true)
[ "$resolved" = "$ID" ] || die "$PINNED does not resolve to the image just built ($ID; got ${resolved:-nothing})"

# 5. Smoke test -----------------------------------------------------------------------
SMOKE=$(mktemp -d "${TMPDIR:-/tmp}/osa-python-image.XXXXXX")
trap 'rm -rf "$SMOKE"' EXIT

HARDENING=(--rm --user 65534:65534 --network none --read-only --cap-drop ALL
    --security-opt no-new-privileges --pids-limit 256 --memory "$SMOKE_MEMORY"
    --memory-swap "$SMOKE_MEMORY" --cpus "$SMOKE_CPUS" --tmpfs "/tmp:rw,noexec,nosuid,size=100m")

# The registered hooks, one name a line, as osa-run-hook sees them.
if ! HOOKS=$(podman run "${HARDENING[@]}" -e HOME=/tmp --entrypoint /opt/osa/bin/python "$PINNED" -c '
from osa import _registry
from osa._discovery import load_conventions
load_conventions()
for h in _registry.hooks():
    print(h.name)' 2>"$SMOKE/hooks.err"); then
    die "the image cannot load its convention packages: $(cat "$SMOKE/hooks.err")"
fi
HOOK_LIST=$(printf '%s\n' "$HOOKS" | paste -sd' ' -)

# Runs the image over a batch (records.jsonl and a files/ directory, copied) with
# OSA_HOOK_NAME=$1 (empty: unset), as the runner does; sets RUN_OUT (the out/ dir) and
# RUN_LOG (the container's output); returns the container's exit status.
RUN_N=0
run_batch() {
    local hook=$1 records=$2 files=$3 dir status=0
    RUN_N=$((RUN_N + 1))
    dir="$SMOKE/$RUN_N"
    mkdir -p "$dir/in" "$dir/files" "$dir/out"
    cp "$records" "$dir/in/records.jsonl"
    [ -z "$files" ] || cp -R "$files/." "$dir/files/"
    chmod -R o+rX "$dir/in" "$dir/files"
    chmod 0777 "$dir/out"
    local env=(-e OSA_IN=/osa/in -e OSA_OUT=/osa/out -e OSA_FILES=/osa/files -e HOME=/tmp)
    [ -z "$hook" ] || env+=(-e "OSA_HOOK_NAME=$hook")
    RUN_OUT="$dir/out"
    RUN_LOG=$(podman run "${HARDENING[@]}" "${env[@]}" \
        -v "$dir/in:/osa/in:ro" -v "$dir/files:/osa/files:ro" -v "$dir/out:/osa/out:rw" \
        "$PINNED" 2>&1) || status=$?
    return "$status"
}

# Non-empty lines of a file (0 when it does not exist).
lines() { if [ -f "$1" ]; then grep -c . "$1" || true; else echo 0; fi; }

printf '{"id":"r1","metadata":{},"size_hint_mb":0}\n' >"$SMOKE/records.jsonl"
if [ -z "$HOOK_LIST" ]; then
    status=0
    run_batch "" "$SMOKE/records.jsonl" "" || status=$?
    { [ "$status" -eq 1 ] && grep -q 'hooks are registered' <<<"$RUN_LOG"; } \
        || die "with no hook installed, osa-run-hook should refuse (exit 1, naming OSA_HOOK_NAME); exit $status: $RUN_LOG"
    say "no hook registered (no package given): osa-run-hook starts and refuses, as it should"
else
    for hook in $HOOKS; do
        run_batch "$hook" "$SMOKE/records.jsonl" "" \
            || die "osa-run-hook ($hook) failed on a one-record batch (exit $?): $RUN_LOG"
        total=$(( $(lines "$RUN_OUT/features.jsonl") + $(lines "$RUN_OUT/rejections.jsonl") + $(lines "$RUN_OUT/errors.jsonl") ))
        { [ "$total" -eq 1 ] && cat "$RUN_OUT"/*.jsonl | grep -q '"r1"'; } \
            || die "osa-run-hook ($hook) wrote $total outcome lines for the one record r1 (expected 1): $RUN_LOG"
    done
    say "each hook ($HOOK_LIST) processed a one-record batch under the runner's hardening"
    # The sample batches the packages ship: every record gets an outcome, and at least
    # one is a feature or rejection line (not only errors).
    samples=0 decided=0
    for pkg in "${PACKAGES[@]}"; do
        for records in "$pkg"/src/*/samples/in/records.jsonl; do
            [ -f "$records" ] || continue
            samples=$((samples + 1))
            files="$(dirname "$(dirname "$records")")/files"
            [ -d "$files" ] || files=""
            expected=$(lines "$records")
            for hook in $HOOKS; do
                run_batch "$hook" "$records" "$files" \
                    || die "osa-run-hook ($hook) failed on ${records#"$ROOT/"} (exit $?): $RUN_LOG"
                f=$(lines "$RUN_OUT/features.jsonl")
                r=$(lines "$RUN_OUT/rejections.jsonl")
                e=$(lines "$RUN_OUT/errors.jsonl")
                [ $((f + r + e)) -eq "$expected" ] \
                    || die "osa-run-hook ($hook) wrote $((f + r + e)) outcomes for the $expected records of ${records#"$ROOT/"}: $RUN_LOG"
                say "$hook over ${records#"$ROOT/"}: features $f, rejected $r, errors $e"
                decided=$((decided + f + r))
            done
        done
    done
    if [ "$samples" -eq 0 ]; then
        say "no package ships a sample batch (src/*/samples/in/records.jsonl): only the one-record batch ran"
    elif [ "$decided" -eq 0 ]; then
        die "no hook wrote a feature or rejection line for the packages' sample batches (only errors)"
    fi
fi

# 6. Record ---------------------------------------------------------------------------
cat >"$ENV_FILE.tmp" <<EOF
# Written by scripts/python-image.sh. Pinned reference: \$OSA_PYTHON_IMAGE@\$OSA_PYTHON_IMAGE_DIGEST
OSA_PYTHON_IMAGE=$IMAGE
OSA_PYTHON_IMAGE_DIGEST=$DIGEST
OSA_PYTHON_IMAGE_ID=sha256:${ID#sha256:}
OSA_PYTHON_HOOKS="$HOOK_LIST"
OSA_PYTHON_WHEEL=$WHEEL
OSA_PYTHON_BASE=$BASE_IMAGE@$BASE_DIGEST
CONTAINERS_CONF=$CONF
EOF
mv "$ENV_FILE.tmp" "$ENV_FILE"
# Earlier builds the tag moved away from (untagged now; kept until a build passes its
# smoke test, the env file pointing at them until then; kept if a container uses one).
for old in $(podman images --quiet --no-trunc --filter dangling=true \
        --filter label=osa.python-hook.sha256 2>/dev/null); do
    podman rmi "$old" >/dev/null 2>&1 || true
done
say "$PINNED ($(podman image inspect "$PINNED" --format '{{.Size}}' | awk '{printf "%.0f MB", $1 / 1e6}'); hooks: ${HOOK_LIST:-none})"
say "wrote $ENV_FILE"
printf '%s\n' "$PINNED"
