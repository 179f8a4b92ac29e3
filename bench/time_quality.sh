#!/usr/bin/env bash
# Time quality, side by side in one run: one chronyd client (xleave, polling every 1/16 s,
# clock untouched) follows meridian udp, meridian io-uring and a chronyd server at once, each
# on its own loopback address; prints offset median / stdev / p99 |offset| and the share of
# interleaved samples per server from chronyd's measurements.log. Same host clock on every
# side, so the true offset is 0. Loopback only, bounded (SECS, default 20), cleans up by PID.
# Needs root (chronyd drops to _chrony) and target/release/meridian (cargo build --release).
set -euo pipefail
SECS=${SECS:-20}
BIN=${MERIDIAN:-$(dirname "$0")/../target/release/meridian}
DIR=$(mktemp -d /tmp/meridian-tq.XXXXXX)
chown _chrony "$DIR"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.5; rm -rf "$DIR"; }
trap cleanup EXIT
"$BIN" serve --listen 127.0.0.2:11123 --backend udp --workers 1 >"$DIR/udp.log" 2>&1 & pids+=($!)
"$BIN" serve --listen 127.0.0.3:11123 --backend io-uring --workers 1 >"$DIR/uring.log" 2>&1 & pids+=($!)
cat >"$DIR/server.conf" <<CONF
port 11123
bindaddress 127.0.0.4
allow 127.0.0.0/8
local stratum 1
cmdport 0
bindcmdaddress /
pidfile $DIR/server.pid
CONF
chronyd -x -d -f "$DIR/server.conf" >"$DIR/server.log" 2>&1 & pids+=($!)
sleep 1
cat >"$DIR/client.conf" <<CONF
server 127.0.0.2 port 11123 xleave minpoll -4 maxpoll -4 iburst
server 127.0.0.3 port 11123 xleave minpoll -4 maxpoll -4 iburst
server 127.0.0.4 port 11123 xleave minpoll -4 maxpoll -4 iburst
logdir $DIR
log measurements
pidfile $DIR/client.pid
cmdport 0
bindcmdaddress /
CONF
timeout -s TERM "$SECS" chronyd -x -d -f "$DIR/client.conf" >"$DIR/client.log" 2>&1 || true
printf '%-22s %8s %14s %10s %12s %12s\n' server samples median_us stdev_us p99_abs_us interleaved
for ip in 127.0.0.2:meridian-udp 127.0.0.3:meridian-io-uring 127.0.0.4:chronyd; do
    addr=${ip%%:*}; name=${ip#*:}
    # One line per sample: offset in µs, its absolute value, 1 if interleaved; sorted by offset.
    awk -v a="$addr" '$3==a && $1 ~ /^20/ { o=$12*1e6; print o, (o<0?-o:o), ($(NF-2) ~ /I$/) }' \
        "$DIR/measurements.log" | sort -g >"$DIR/$name.txt"
    sort -g -k2 "$DIR/$name.txt" | awk '{ print $2 }' >"$DIR/$name.abs"
    awk -v n="$name" -v absfile="$DIR/$name.abs" '
        { v[NR]=$1; s+=$1; ss+=$1*$1; il+=$3 }
        END { if (NR==0) { printf("%-22s no samples\n", n); exit }
          k=0; while ((getline x < absfile) > 0) ab[++k]=x
          p=int(NR*0.99); if (p < 1) p=1; m=s/NR
          printf("%-22s %8d %+14.3f %10.3f %12.3f %11.1f%%\n", n, NR, v[int((NR+1)/2)],
            sqrt(ss/NR-m*m), ab[p], 100*il/NR) }' "$DIR/$name.txt"
done
