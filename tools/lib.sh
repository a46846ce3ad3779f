# Shared by tools/dev and tools/test: install what is missing, then build.
# The `swift` on PATH may be OpenStack's client (python3-swiftclient): the toolchain goes first.
export PATH=/opt/swift/usr/bin:$PATH
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

APT_PACKAGES="pkg-config libsodium-dev liblz4-dev libvirt-dev libisal-dev libssl-dev libxml2 s3cmd curl"
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
