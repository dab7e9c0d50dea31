#!/usr/bin/env bash
# Creates and starts a PostgreSQL cluster that accepts TCP connections over TLS only,
# for the tests that need a server with sslmode=require:
#
#  1. creates the cluster $CLUSTER (default osa_tls) of the PostgreSQL version found
#     in /etc/postgresql (the highest, when there are several) with pg_createcluster,
#     unless it exists; start.conf is `manual`, so only this script starts it;
#  2. makes a self-signed certificate (openssl, CN and subjectAltName 127.0.0.1, ::1,
#     localhost) as server.crt/server.key in the cluster's data directory, owned by
#     postgres, key mode 0600, unless a valid one (not expiring within a day) is there;
#  3. writes conf.d/osa-tls.conf of the cluster (read after its postgresql.conf):
#     port $OSA_PG_TLS_PORT (default 5433), listen_addresses 127.0.0.1, ssl on with
#     that certificate, TLS 1.2 at least;
#  4. writes its pg_hba.conf: trust on the local socket, `hostssl … trust` for
#     127.0.0.1/32 and ::1/128, and `hostnossl … reject` for every address, so a TCP
#     client that does not use TLS is refused;
#  5. starts the cluster when it is stopped (restarts it when steps 2-4 changed
#     anything while it ran), waits until it accepts connections and checks that a
#     connection with sslmode=require is encrypted and one with sslmode=disable is
#     refused.
#
# Progress goes to stderr; the last (and only) line on stdout is the URL to use:
#   postgres://postgres@127.0.0.1:5433/postgres?sslmode=require
#
# Usage: scripts/pg-tls-setup.sh [start]   everything above (idempotent)
#        scripts/pg-tls-setup.sh stop      stops the cluster
#
# Needs root (or the postgres user for an existing cluster), the postgresql-common
# tools (pg_createcluster, pg_ctlcluster, pg_conftool, pg_lsclusters), psql, pg_isready
# and openssl. Other clusters (e.g. 15/main on 5432) are not touched.
set -euo pipefail

CLUSTER=${OSA_PG_TLS_CLUSTER:-osa_tls}
PORT=${OSA_PG_TLS_PORT:-5433}
HOST=127.0.0.1
URL="postgres://postgres@$HOST:$PORT/postgres?sslmode=require"

say() { printf 'pg-tls-setup: %s\n' "$*" >&2; }
die() { printf 'pg-tls-setup: error: %s\n' "$*" >&2; exit 1; }

need_tools() {
    local tool
    for tool in pg_lsclusters pg_createcluster pg_ctlcluster pg_conftool psql pg_isready openssl; do
        command -v "$tool" >/dev/null 2>&1 \
            || die "$tool is missing; install postgresql, postgresql-client and openssl"
    done
}

pg_version() {
    [ -d /etc/postgresql ] || die "/etc/postgresql does not exist; is PostgreSQL installed?"
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    [ -n "$version" ] || die "no PostgreSQL version under /etc/postgresql"
    [ -x "/usr/lib/postgresql/$version/bin/postgres" ] \
        || die "PostgreSQL $version has a configuration directory but no server binary (/usr/lib/postgresql/$version/bin/postgres)"
    echo "$version"
}

cluster_exists() { [ -f "$CONF_DIR/postgresql.conf" ]; }

# pg_ctlcluster status: 0 running, 3 stopped, 4 no such cluster (or unreadable).
cluster_running() { pg_ctlcluster "$VERSION" "$CLUSTER" status >/dev/null 2>&1; }

data_dir() {
    local dir
    dir=$(pg_conftool -s "$VERSION" "$CLUSTER" show data_directory 2>/dev/null || true)
    dir=${dir//\'/}
    [ -n "$dir" ] || die "cannot read data_directory of cluster $VERSION/$CLUSTER ($CONF_DIR/postgresql.conf)"
    [ -d "$dir" ] || die "data directory $dir of cluster $VERSION/$CLUSTER is missing; drop the cluster (pg_dropcluster $VERSION $CLUSTER) and rerun"
    echo "$dir"
}

check_port_free() {
    # Another cluster configured on the port would collide with ours at start.
    local other
    other=$(pg_lsclusters -h | awk -v p="$PORT" -v c="$CLUSTER" -v v="$VERSION" \
        '$3 == p && !($1 == v && $2 == c) { print $1 "/" $2 }')
    [ -z "$other" ] || die "port $PORT is already used by cluster $other; choose another with OSA_PG_TLS_PORT"
}

create_cluster() {
    [ "$(id -u)" -eq 0 ] || die "creating cluster $VERSION/$CLUSTER needs root"
    say "creating cluster $VERSION/$CLUSTER on port $PORT"
    pg_createcluster --port "$PORT" --start-conf manual "$VERSION" "$CLUSTER" \
        -- --auth-local trust --auth-host reject >&2 \
        || die "pg_createcluster $VERSION $CLUSTER failed"
}

cert_valid() {
    [ -s "$CERT" ] && [ -s "$KEY" ] || return 1
    openssl x509 -in "$CERT" -noout -checkend 86400 >/dev/null 2>&1 || return 1
    # The key must belong to the certificate.
    [ "$(openssl x509 -in "$CERT" -noout -pubkey 2>/dev/null)" = \
      "$(openssl pkey -in "$KEY" -pubout 2>/dev/null)" ]
}

make_cert() {
    if cert_valid; then
        say "certificate $CERT is valid"
    else
        say "making a self-signed certificate in $DATA"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -sha256 \
            -subj "/CN=$HOST" -addext "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost" \
            -keyout "$KEY.tmp" -out "$CERT.tmp" 2>/dev/null \
            || die "openssl could not make a certificate"
        mv "$KEY.tmp" "$KEY"
        mv "$CERT.tmp" "$CERT"
    fi
    # The server refuses a key readable by group or others.
    chown postgres:postgres "$CERT" "$KEY" || die "cannot give $CERT and $KEY to postgres"
    chmod 0644 "$CERT"
    chmod 0600 "$KEY"
}

configure() {
    # conf.d/ is included at the end of postgresql.conf (include_dir), so these
    # settings override the ones pg_createcluster wrote there; the postgresql-common
    # tools (pg_lsclusters, pg_ctlcluster) follow the include too.
    local dir="$CONF_DIR/conf.d"
    mkdir -p "$dir"
    cat >"$dir/osa-tls.conf.tmp" <<EOF
# Written by scripts/pg-tls-setup.sh: TLS on 127.0.0.1 only.
port = $PORT
listen_addresses = '$HOST'
ssl = on
ssl_cert_file = '$CERT'
ssl_key_file = '$KEY'
ssl_min_protocol_version = 'TLSv1.2'
EOF
    chown postgres:postgres "$dir" "$dir/osa-tls.conf.tmp"
    chmod 0644 "$dir/osa-tls.conf.tmp"
    mv "$dir/osa-tls.conf.tmp" "$dir/osa-tls.conf"
}

write_hba() {
    cat >"$CONF_DIR/pg_hba.conf.tmp" <<'EOF'
# Written by scripts/pg-tls-setup.sh: TCP connections must use TLS.
# TYPE     DATABASE  USER  ADDRESS       METHOD
local      all       all                 trust
hostssl    all       all   127.0.0.1/32  trust
hostssl    all       all   ::1/128       trust
hostnossl  all       all   0.0.0.0/0     reject
hostnossl  all       all   ::/0          reject
EOF
    chown postgres:postgres "$CONF_DIR/pg_hba.conf.tmp"
    chmod 0640 "$CONF_DIR/pg_hba.conf.tmp"
    mv "$CONF_DIR/pg_hba.conf.tmp" "$CONF_DIR/pg_hba.conf"
}

# A digest of everything the running server reads at start.
settings_digest() {
    local file
    for file in "$CONF_DIR/postgresql.conf" "$CONF_DIR/conf.d/osa-tls.conf" \
            "$CONF_DIR/pg_hba.conf" "$CERT" "$KEY"; do
        if [ -f "$file" ]; then sha256sum "$file"; else echo "missing $file"; fi
    done | sha256sum
}

log_tail() {
    local log
    log=$(pg_lsclusters -h | awk -v c="$CLUSTER" -v v="$VERSION" '$1 == v && $2 == c { print $7 }')
    if [ -n "$log" ] && [ -f "$log" ]; then
        printf '\nits log (%s):\n%s' "$log" "$(tail -n 20 "$log")"
    fi
}

start_cluster() {
    local before=$1
    if cluster_running; then
        if [ "$before" = "$(settings_digest)" ]; then
            say "cluster $VERSION/$CLUSTER is already running"
            return
        fi
        say "settings changed: restarting cluster $VERSION/$CLUSTER"
        pg_ctlcluster "$VERSION" "$CLUSTER" restart >&2 \
            || die "pg_ctlcluster $VERSION $CLUSTER restart failed$(log_tail)"
    else
        say "starting cluster $VERSION/$CLUSTER"
        pg_ctlcluster "$VERSION" "$CLUSTER" start >&2 \
            || die "pg_ctlcluster $VERSION $CLUSTER start failed$(log_tail)"
    fi
}

wait_ready() {
    for _ in $(seq 1 100); do
        pg_isready -q -h "$HOST" -p "$PORT" && return
        sleep 0.1
    done
    die "cluster $VERSION/$CLUSTER does not accept connections on $HOST:$PORT within 10 s$(log_tail)"
}

check_tls() {
    local ssl output
    ssl=$(psql "$URL" -XAtq -c 'select ssl from pg_stat_ssl where pid = pg_backend_pid()' 2>&1) \
        || die "cannot connect with sslmode=require: $ssl"
    [ "$ssl" = t ] || die "the connection with sslmode=require is not encrypted (pg_stat_ssl.ssl = ${ssl:-<none>})"
    if output=$(psql "postgres://postgres@$HOST:$PORT/postgres?sslmode=disable" -XAtq -c 'select 1' 2>&1); then
        die "a connection without TLS was accepted; check $CONF_DIR/pg_hba.conf"
    fi
    case "$output" in
        *"no encryption"*) ;;
        *) die "the connection without TLS failed, but not because pg_hba.conf rejects it: $output" ;;
    esac
}

stop_cluster() {
    if ! cluster_exists; then
        say "cluster $VERSION/$CLUSTER does not exist"
    elif cluster_running; then
        pg_ctlcluster "$VERSION" "$CLUSTER" stop >&2 || die "pg_ctlcluster $VERSION $CLUSTER stop failed$(log_tail)"
        say "stopped cluster $VERSION/$CLUSTER"
    else
        say "cluster $VERSION/$CLUSTER is not running"
    fi
}

need_tools
VERSION=$(pg_version)
CONF_DIR="/etc/postgresql/$VERSION/$CLUSTER"

case "${1:-start}" in
    stop) stop_cluster; exit 0 ;;
    start) ;;
    *) die "unknown command ${1}; usage: $0 [start|stop]" ;;
esac

check_port_free
cluster_exists || create_cluster
DATA=$(data_dir)
CERT="$DATA/server.crt"
KEY="$DATA/server.key"
before=$(settings_digest)
make_cert
configure
write_hba
start_cluster "$before"
wait_ready
check_tls
say "cluster $VERSION/$CLUSTER (data $DATA) accepts TLS only on $HOST:$PORT"
echo "$URL"
