#!/usr/bin/env bash
# ceph-rgw.sh -- a throw-away, single-node Ceph RGW on loopback for object_clerk's
# demo, tests and benchmarks: one ceph-mon, one memstore ceph-osd and one radosgw
# (beast frontend, HTTP and HTTPS with a generated self-signed certificate).
# No systemd, no cephx, no ceph-mgr; everything lives in $CEPH_RGW_DIR.
#
#   scripts/ceph-rgw.sh up       install the Debian packages if missing, start the
#                                cluster (or reuse a healthy one), print its env
#   scripts/ceph-rgw.sh down     stop exactly the PIDs recorded at start, delete the dir
#   scripts/ceph-rgw.sh status   exit 0 when the recorded cluster answers S3
#
# `up` prints KEY=VALUE lines (also written to $CEPH_RGW_DIR/s3.env):
#   CEPH_RGW_ENDPOINT, CEPH_RGW_HTTPS_ENDPOINT, CEPH_RGW_CA_BUNDLE,
#   CEPH_RGW_ACCESS_KEY, CEPH_RGW_SECRET_KEY, CEPH_RGW_CONF (for the rados and
#   radosgw-admin tools: CEPH_CONF=$CEPH_RGW_CONF)
#
# Knobs: CEPH_RGW_DIR (default ${TMPDIR:-/tmp}/object-clerk-ceph), CEPH_RGW_PORT (7480),
# CEPH_RGW_SSL_PORT (7443), CEPH_MON_V2_PORT (3300), CEPH_MON_V1_PORT (6789),
# CEPH_RGW_START_TIMEOUT (60 s per phase).
#
# Why the odd settings below: each fixes a trap measured on Ceph 16.2 (see comments).
set -euo pipefail

DIR=${CEPH_RGW_DIR:-${TMPDIR:-/tmp}/object-clerk-ceph}
RGW_PORT=${CEPH_RGW_PORT:-7480}
RGW_SSL_PORT=${CEPH_RGW_SSL_PORT:-7443}
MON_V2_PORT=${CEPH_MON_V2_PORT:-3300}
MON_V1_PORT=${CEPH_MON_V1_PORT:-6789}
TIMEOUT=${CEPH_RGW_START_TIMEOUT:-60}
# Test-only credentials of a loopback throw-away cluster, not secrets.
ACCESS_KEY=OBJECTCLERKTESTKEY01
SECRET_KEY=objectclerktestsecret00000000000000000001

ENDPOINT="http://127.0.0.1:${RGW_PORT}"
CONF="$DIR/ceph.conf"
PIDS="$DIR/pids"
export CEPH_CONF="$CONF"

log() { echo "[ceph-rgw $(date +%T)] $*" >&2; }
die() {
    log "ERROR: $*"
    for f in "$DIR"/log/*.log "$DIR"/log/*.stdout; do
        [ -f "$f" ] && { echo "--- tail $f" >&2; tail -n 5 "$f" >&2; }
    done
    exit 1
}

# A zombie still answers `kill -0`, so read the state from /proc.
alive() { local st; st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [ "$st" != Z ]; }

all_alive() {
    [ -s "$PIDS" ] || return 1
    local name pid
    while read -r name pid; do alive "$pid" || return 1; done < "$PIDS"
}

s3_answers() { curl -fsS -o /dev/null --max-time 2 "$ENDPOINT/"; }

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# our_pid NAME: the recorded PID of NAME, if it is alive and still a ceph daemon
our_pid() {
    local pid
    pid=$(awk -v n="$1" '$1 == n {print $2}' "$PIDS" 2>/dev/null | tail -1)
    [ -n "$pid" ] && alive "$pid" || return 1
    case "$(readlink "/proc/$pid/exe" 2>/dev/null)" in
        */ceph-mon|*/ceph-osd|*/radosgw) echo "$pid" ;;
        *) return 1 ;;
    esac
}

wait_for() {  # wait_for SECONDS WHAT CMD...: poll, failing fast if a daemon died
    local t=$1 what=$2; shift 2
    local end=$((SECONDS + t)) name pid
    until "$@" >/dev/null 2>&1; do
        while read -r name pid; do
            alive "$pid" || die "$name (pid $pid) exited while waiting for $what"
        done < "$PIDS"
        [ $SECONDS -lt $end ] || die "timed out after ${t}s waiting for $what"
        sleep 0.2
    done
}

# start_daemon NAME CMD...: run a foreground daemon detached in its own session and
# record its own PID (the inner bash execs the daemon, so $$ is the daemon's PID).
start_daemon() {
    local name=$1; shift
    # shellcheck disable=SC2016
    setsid bash -c 'echo $$ > "$0"; exec "$@"' "$DIR/run/$name.spid" "$@" \
        > "$DIR/log/$name.stdout" 2>&1 < /dev/null &
    for _ in $(seq 50); do [ -s "$DIR/run/$name.spid" ] && break; sleep 0.05; done
    local pid
    pid=$(cat "$DIR/run/$name.spid" 2>/dev/null) || die "could not start $name"
    echo "$name $pid" >> "$PIDS"
    log "started $name pid=$pid"
}

print_env() {
    {
        echo "CEPH_RGW_ENDPOINT=$ENDPOINT"
        echo "CEPH_RGW_HTTPS_ENDPOINT=https://127.0.0.1:${RGW_SSL_PORT}"
        echo "CEPH_RGW_CA_BUNDLE=$DIR/rgw/cert.pem"
        echo "CEPH_RGW_ACCESS_KEY=$ACCESS_KEY"
        echo "CEPH_RGW_SECRET_KEY=$SECRET_KEY"
        echo "CEPH_RGW_CONF=$CONF"
    } > "$DIR/s3.env"
    cat "$DIR/s3.env"
}

install_packages() {
    local missing=()
    for bin in ceph-mon ceph-osd radosgw radosgw-admin rados monmaptool; do
        command -v "$bin" >/dev/null || missing+=("$bin")
    done
    command -v curl >/dev/null || missing+=(curl)
    command -v openssl >/dev/null || missing+=(openssl)
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Ceph RGW packages (missing: ${missing[*]})"
    [ "$(id -u)" = 0 ] || die "need root to apt-get install ceph-mon ceph-osd radosgw ceph-common curl openssl"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends \
        ceph-mon ceph-osd radosgw ceph-common curl openssl >&2
}

stop_daemons() {
    [ -s "$PIDS" ] || return 0
    local n pid
    # Stop rgw, then the OSD, then the mon: stopping rgw and the OSD together makes
    # radosgw wait for RADOS on shutdown (120 s by default).
    for n in client.rgw.r osd.0 mon.a; do
        pid=$(our_pid "$n") || continue
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
        if alive "$pid"; then log "$n pid=$pid still alive after 10 s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
        log "stopped $n pid=$pid"
    done
    : > "$PIDS"
}

cmd_down() {
    stop_daemons
    rm -rf "${DIR:?}"
    log "down"
}

cmd_status() { all_alive && s3_answers; }

cmd_up() {
    install_packages
    if all_alive && s3_answers; then
        log "already running (pids in $PIDS)"
        print_env
        return 0
    fi
    if [ -s "$PIDS" ]; then
        log "stale cluster in $DIR: stopping it first"
        stop_daemons
    fi
    for p in "$MON_V2_PORT" "$MON_V1_PORT" "$RGW_PORT" "$RGW_SSL_PORT"; do
        port_busy "$p" && die "127.0.0.1:$p is already in use (set CEPH_RGW_PORT, CEPH_RGW_SSL_PORT, CEPH_MON_V*_PORT)"
    done
    rm -rf "${DIR:?}"
    mkdir -p "$DIR"/{log,run,mon,osd,rgw}
    : > "$PIDS"
    local t0=$SECONDS fsid mon_addr osd_uuid osd_id
    fsid=$(cat /proc/sys/kernel/random/uuid)
    mon_addr="[v2:127.0.0.1:${MON_V2_PORT},v1:127.0.0.1:${MON_V1_PORT}]"

    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost \
        -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
        -keyout "$DIR/rgw/key.pem" -out "$DIR/rgw/cert.pem" 2>/dev/null

    cat > "$CONF" <<CONF
[global]
fsid = $fsid
mon host = $mon_addr
public network = 127.0.0.0/8
ms bind ipv6 = false
# loopback-only throw-away cluster: no cephx
auth cluster required = none
auth service required = none
auth client required = none
keyring = /dev/null
run dir = $DIR/run
admin socket = $DIR/run/\$name.asok
pid file = $DIR/run/\$name.pid
log file = $DIR/log/\$name.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
mon data avail crit = 0
mon data avail warn = 0
mon osd full ratio = 0.99
mon osd backfillfull ratio = 0.99
mon osd nearfull ratio = 0.99
osd failsafe full ratio = 1.0

[mon.a]
mon data = $DIR/mon
# rgw's start issues ~12 pool commands; the default 1 s batching makes start take 13 s
paxos propose interval = 0.01
paxos min wait = 0.001
# no ceph-mgr on purpose
mon mgr mkfs grace = 315360000

[osd.0]
osd data = $DIR/osd
osd objectstore = memstore
# memstore keeps object data in the OSD's RAM
memstore device bytes = 8589934592
osd class load list = *
osd class default list = *

[client.rgw.r]
# tcp_nodelay: without it beast's small response writes wait for the client's delayed ACK,
# and a small GET in a loop takes 44 ms instead of 2 ms
rgw frontends = beast tcp_nodelay=1 endpoint=127.0.0.1:${RGW_PORT} ssl_endpoint=127.0.0.1:${RGW_SSL_PORT} ssl_certificate=$DIR/rgw/cert.pem ssl_private_key=$DIR/rgw/key.pem
rgw data = $DIR/rgw
# with auth disabled radosgw loops forever unless its mon client mode is crc
ms mon client mode = crc
rgw exit timeout secs = 5
# the seed README's buckets (source_bucket, bucket_name) are legacy names with underscores
rgw relaxed s3 bucket names = true
# free deleted data (RAM, with memstore) within seconds, not hours
rgw gc obj min wait = 5
rgw gc processor period = 5
CONF

    monmaptool --create --fsid "$fsid" --addv a "$mon_addr" "$DIR/monmap" >/dev/null
    ceph-mon --mkfs -i a --monmap "$DIR/monmap" --keyring /dev/null
    start_daemon mon.a ceph-mon -f -i a
    wait_for "$TIMEOUT" "mon quorum" timeout 5 ceph health

    osd_uuid=$(cat /proc/sys/kernel/random/uuid)
    osd_id=$(timeout 30 ceph osd new "$osd_uuid")
    [ "$osd_id" = 0 ] || die "expected osd id 0, got '$osd_id'"
    ceph-osd -i 0 --mkfs --osd-uuid "$osd_uuid" > "$DIR/log/osd.0.mkfs" 2>&1 \
        || die "ceph-osd --mkfs failed"
    start_daemon osd.0 ceph-osd -f -i 0
    osd_up() { timeout 5 ceph osd dump | grep -q '^osd\.0 up'; }
    wait_for "$TIMEOUT" "osd.0 up" osd_up

    start_daemon client.rgw.r radosgw -f -n client.rgw.r
    wait_for "$TIMEOUT" "radosgw answering on $ENDPOINT" s3_answers

    radosgw-admin user create --uid=test --display-name=test \
        --access-key="$ACCESS_KEY" --secret-key="$SECRET_KEY" \
        > "$DIR/log/user-create.json" 2>&1 || die "radosgw-admin user create failed"
    log "ready in $((SECONDS - t0)) s"
    print_env
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
