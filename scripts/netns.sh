#!/bin/sh
# Two network namespaces joined by one veth pair, for benchmarks and trying things by hand on
# a real link (XDP, namespaces' own port 123, many client source addresses). The tests build
# the same pair themselves with meridian-testkit (testkit/src/netns.rs):
#
#   NAME-srv  veth NAME-s0  10.201.0.1/24  fd00:201::1/64
#   NAME-cli  veth NAME-c0  10.201.0.2/24  fd00:201::2/64  (+ extra client addresses)
#
# usage: scripts/netns.sh up|down|status [NAME]      (NAME defaults to "mer")
#   EXTRA=N   also give the client namespace N more addresses, 10.201.0.100 ... and
#             fd00:201::100 ... (N ≤ 150), for `meridian-loadgen --source-cidr 10.201.0.100/24`
#   MTU=M     veth MTU (default 1500)
#
# The veth pair is created directly inside the namespaces: the host's own interfaces, routes
# and addresses are never touched. `up` is idempotent (re-running adds what is missing),
# `down` deletes the two namespaces, which deletes the veth pair with them.
set -eu

action=${1:-}
name=${2:-mer}
extra=${EXTRA:-0}
mtu=${MTU:-1500}

srv="$name-srv"
cli="$name-cli"
sdev="$name-s0"
cdev="$name-c0"

usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "netns.sh: needs root (CAP_NET_ADMIN)" >&2
        exit 1
    fi
}

case "$name" in
    *[!A-Za-z0-9_-]* | "") echo "netns.sh: NAME must be [A-Za-z0-9_-]+" >&2; exit 2 ;;
esac
# Interface names are at most 15 bytes.
if [ ${#sdev} -gt 15 ]; then
    echo "netns.sh: NAME too long (interface $sdev exceeds 15 characters)" >&2
    exit 2
fi
case "$extra" in
    *[!0-9]* | "") echo "netns.sh: EXTRA must be a number" >&2; exit 2 ;;
esac
if [ "$extra" -gt 150 ]; then
    echo "netns.sh: EXTRA must be at most 150" >&2
    exit 2
fi

ns_exists() {
    ip netns list | awk '{print $1}' | grep -qx "$1"
}

in_ns() {
    ns=$1
    shift
    ip netns exec "$ns" "$@"
}

ensure_ns() {
    if ns_exists "$1"; then
        echo "namespace $1: exists"
    else
        ip netns add "$1"
        echo "namespace $1: created"
    fi
    in_ns "$1" ip link set lo up
}

add_addr() { # ns dev addr/len
    if in_ns "$1" ip -o addr show dev "$2" | grep -q " ${3%/*}/"; then
        return 0
    fi
    case "$3" in
        *:*) in_ns "$1" ip addr add "$3" dev "$2" nodad ;;
        *) in_ns "$1" ip addr add "$3" dev "$2" ;;
    esac
    echo "  $1 $2 $3"
}

up() {
    need_root
    ensure_ns "$srv"
    ensure_ns "$cli"
    if in_ns "$srv" ip link show "$sdev" >/dev/null 2>&1; then
        echo "veth $sdev <-> $cdev: exists"
    else
        # A half-built pair from an interrupted run: remove the stray end first.
        in_ns "$cli" ip link del "$cdev" 2>/dev/null || true
        ip link add "$sdev" netns "$srv" mtu "$mtu" type veth peer name "$cdev" netns "$cli" mtu "$mtu"
        echo "veth $sdev ($srv) <-> $cdev ($cli): created"
    fi
    echo "addresses:"
    add_addr "$srv" "$sdev" 10.201.0.1/24
    add_addr "$srv" "$sdev" fd00:201::1/64
    add_addr "$cli" "$cdev" 10.201.0.2/24
    add_addr "$cli" "$cdev" fd00:201::2/64
    i=0
    while [ "$i" -lt "$extra" ]; do
        add_addr "$cli" "$cdev" "10.201.0.$((100 + i))/24"
        add_addr "$cli" "$cdev" "fd00:201::$(printf %x $((0x100 + i)))/64"
        i=$((i + 1))
    done
    in_ns "$srv" ip link set "$sdev" up
    in_ns "$cli" ip link set "$cdev" up
    # Many source addresses reach the server only if replies are not dropped as martians.
    in_ns "$srv" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf."$sdev".rp_filter=0 || true
    in_ns "$cli" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf."$cdev".rp_filter=0 || true
    echo "ready:"
    echo "  ip netns exec $srv meridian serve --listen 10.201.0.1:123 --listen [fd00:201::1]:123"
    if [ "$extra" -gt 0 ]; then
        echo "  ip netns exec $cli meridian-loadgen --target 10.201.0.1:123 --clients $extra --source-cidr 10.201.0.100/24 ..."
    else
        echo "  ip netns exec $cli meridian-loadgen --target 10.201.0.1:123 ..."
    fi
}

down() {
    need_root
    for ns in "$cli" "$srv"; do
        if ns_exists "$ns"; then
            ip netns del "$ns"
            echo "namespace $ns: deleted (with its end of the veth pair)"
        else
            echo "namespace $ns: absent"
        fi
    done
}

status() {
    for ns in "$srv" "$cli"; do
        if ns_exists "$ns"; then
            echo "namespace $ns:"
            in_ns "$ns" ip -br addr show | sed 's/^/  /'
        else
            echo "namespace $ns: absent"
        fi
    done
}

case "$action" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) usage ;;
esac
