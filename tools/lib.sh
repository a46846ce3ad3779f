# Shared by tools/dev and tools/test: install what is missing, then build.
# The `swift` on PATH may be OpenStack's client (python3-swiftclient): the toolchain goes first.
export PATH=/opt/swift/usr/bin:$PATH
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

APT_PACKAGES="pkg-config libsodium-dev liblz4-dev libvirt-dev libisal-dev libssl-dev libsqlite3-dev libxml2 s3cmd curl wrk tcpdump"
# Installed without their recommendations: only promtool (`check metrics` in the tests) is used.
APT_LEAN="prometheus"

# apt_missing [APT-GET FLAGS…] -- PACKAGES…: installs those of PACKAGES not installed yet.
apt_missing() {
    local flags=() missing=""
    while [ "$1" != "--" ]; do flags+=("$1"); shift; done; shift
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    [ -n "$missing" ] || return 0
    echo "tools: installing Debian packages:$missing" >&2
    local sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${flags[@]}" $missing >&2
}

install_missing() {
    apt_missing -- $APT_PACKAGES
    apt_missing --no-install-recommends -- $APT_LEAN
    local pymissing=""
    python3 -c 'import boto3' 2>/dev/null || pymissing="$pymissing boto3"
    python3 -c 'import pytest' 2>/dev/null || pymissing="$pymissing pytest"
    python3 -c 'import requests' 2>/dev/null || pymissing="$pymissing requests"
    python3 -c 'import awscrt' 2>/dev/null || pymissing="$pymissing awscrt"  # boto3's CRC32C
    command -v aws >/dev/null 2>&1 || pymissing="$pymissing awscli"
    if [ -n "$pymissing" ]; then
        echo "tools: installing Python packages:$pymissing" >&2
        python3 -m pip install -q $pymissing >&2
    fi
    if ! command -v swift >/dev/null 2>&1 || ! swift --version 2>&1 | grep -q 'Swift version'; then
        echo "tools: the Swift toolchain is missing (expected at /opt/swift/usr/bin)" >&2
        exit 1
    fi
}

build() {
    (cd "$ROOT" && swift build "$@" >&2)
}

STACKS_BIN="$ROOT/.build/debug/stacks"

# A local cluster's node I of $nodes, under $DEV with the gossip key in $DEV/gossip.key: S3 on
# 127.0.0.1:($PORT + I - 1); gossip 7946, data 7300, Raft 7100 (+ I - 1) and admin 9100, metrics
# 9200 (+ I), each + ${OFFSET:-0}; zones zone-1..3 round robin. Used by tools/dev and tools/bench/s3.
dev_node_config() { # I [TOKEN]: node1 founds the cluster; the others enrol with TOKEN through node1
    local i=$1 token=${2:-} d="$DEV/node$1" seeds="" j key="" join=""
    mkdir -p "$d"
    # Seeds: the first three nodes, so a restarted node finds the others again.
    for j in $(seq 1 $((nodes < 3 ? nodes : 3))); do seeds+="${seeds:+, }\"127.0.0.1:$((${OFFSET:-0} + 7946 + j - 1))\""; done
    # A dev dir from before join tokens keeps its shared gossip key.
    [ -f "$DEV/gossip.key" ] && key="key = \"$(cat "$DEV/gossip.key")\""
    [ -n "$token" ] && join="[join]
seed = \"127.0.0.1:$((${OFFSET:-0} + 7300))\"
token = \"$token\""
    cat >"$DEV/node$i.toml" <<CONF
# Written by tools/dev.
[node]
name = "node$i"
data_dir = "$d"

[s3]
listen = "127.0.0.1:$((PORT + i - 1))"
region = "us-east-1"

[gossip]
listen = "127.0.0.1:$((${OFFSET:-0} + 7946 + i - 1))"
seeds = [$seeds]
$key

[admin]
listen = "127.0.0.1:$((${OFFSET:-0} + 9100 + i))"

[metrics]
listen = "127.0.0.1:$((${OFFSET:-0} + 9200 + i))"

[data]
listen = "127.0.0.1:$((${OFFSET:-0} + 7300 + i - 1))"

[raft]
listen = "127.0.0.1:$((${OFFSET:-0} + 7100 + i - 1))"
# node1 founds the cluster; the others are added by its leader as they appear in gossip.
bootstrap = $([ "$i" = 1 ] && echo true || echo false)

[tags]
zone = "zone-$(( (i - 1) % 3 + 1 ))"

$join
CONF
}

dev_wait_ready() { # I PID
    local i=$1 pid=$2 d="$DEV/node$1"
    for _ in $(seq 1 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "tools/dev: node$i exited; last log lines:" >&2; tail -20 "$d/log" >&2; return 1
        fi
        if [ -f "$d/env" ] && [ -f "$d/admin" ] && curl -s -o /dev/null "http://127.0.0.1:$((PORT + i - 1))/"; then return 0; fi
        sleep 0.1
    done
    echo "tools/dev: node$i did not answer within 30 s; see $d/log" >&2
    # Say why when the node can: typically data of a bigger cluster started here before, whose
    # voters are not all running now.
    if [ -f "$d/admin" ]; then
        "$STACKS_BIN" status --data-dir "$d" 2>&1 | grep '^health:' >&2 || true
        echo "tools/dev: if a cluster of more nodes ran here before, start as many (./tools/dev up --nodes N) or remove $DEV; ./tools/dev down stops what started" >&2
    fi
    return 1
}
