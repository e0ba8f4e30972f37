#!/usr/bin/env bash
# Real fio 3.33 (--ioengine=nbd, one connection) against `ferrite serve`'s NBD export (encryption
# off and on) and against `qemu-storage-daemon --export type=nbd` on a raw file (aio=io_uring),
# in one run on one machine: 4 KiB random read and random write at queue depth 1 and 32 after a
# sequential fill, all from the one job file benches/nbd-bench.fio. Prints IOPS, p50 and p99
# latency, and the ratio ferrite/qsd.
#
# FERRITE_BENCH_SECS: seconds per case (default 10). Needs fio, qemu-storage-daemon and jq.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${FERRITE_BENCH_SECS:-10}"
cargo build --release --quiet
ferrite="${CARGO_TARGET_DIR:-target}/release/ferrite"
ferrite="$(realpath "$ferrite")"
work="$(mktemp -d /tmp/ferrite-nbd-bench.XXXXXX)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
    # A sealed run leaves an instance whose key is in the kernel keyring: end it.
    [ -d "$work/enc" ] && (cd "$work/enc" && "$ferrite" terminate --config ferrite.toml >/dev/null 2>&1) || true
    rm -rf "$work"
}
trap cleanup EXIT

geometry='[geometry]
channels = 2
dies_per_channel = 2
planes_per_die = 1
blocks_per_plane = 64
pages_per_block = 256
page_size = 4096
oob_size = 64
[[namespace]]
nsid = 1
devices = 4
socket = "vhost.sock"'

start_ferrite() { # DIR ENCRYPTION
    mkdir -p "$1"
    printf 'encryption = %s\n%s\n' "$2" "$geometry" > "$1/ferrite.toml"
    (cd "$1" && exec "$ferrite" serve --config ferrite.toml > serve.log 2>&1) &
    pids+=($!)
    for _ in $(seq 600); do grep -q "control socket" "$1/serve.log" 2>/dev/null && break; sleep 0.1; done
}

# Every case runs the one job file benches/nbd-bench.fio; fio's --section picks the fill or the
# measured job, the environment fills in the server and the case.
job="$(pwd)/benches/nbd-bench.fio"
run() { # URI RW DEPTH -> "iops p50_us p99_us"
    local dir=read
    [ "$2" = randwrite ] && dir=write
    NBD_URI="$1" RW="$2" DEPTH="$3" SECS="$secs" fio --section=bench --output-format=json "$job" \
        2>/dev/null | sed -n '/^{/,$p' |
        jq -r ".jobs[0].$dir | \"\(.iops|floor) \(.clat_ns.percentile[\"50.000000\"]/1000) \(.clat_ns.percentile[\"99.000000\"]/1000)\""
}

fill() { NBD_URI="$1" RW=write DEPTH=1 SECS=1 fio --section=fill --output-format=terse "$job" >/dev/null 2>&1; }

start_ferrite "$work/plain" false
start_ferrite "$work/enc" true
size="$(grep -o -- '--size=[0-9]*' "$work/plain/serve.log" | cut -d= -f2)"
truncate -s "$size" "$work/qsd.raw"
qemu-storage-daemon --blockdev "driver=file,node-name=file,filename=$work/qsd.raw,aio=io_uring" \
    --blockdev driver=raw,node-name=disk,file=file \
    --nbd-server "addr.type=unix,addr.path=$work/qsd.sock" \
    --export type=nbd,id=exp,node-name=disk,name=qsd,writable=on > "$work/qsd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S "$work/qsd.sock" ] && break; sleep 0.1; done

plain="nbd+unix:///ferrite?socket=$work/plain/ferrite-nbd.sock"
enc="nbd+unix:///ferrite?socket=$work/enc/ferrite-nbd.sock"
qsd="nbd+unix:///qsd?socket=$work/qsd.sock"
for u in "$plain" "$enc" "$qsd"; do fill "$u"; done

printf '%-15s %-14s %10s %10s %10s %7s\n' case server IOPS p50_us p99_us ratio
for rw in randread randwrite; do for depth in 1 32; do
    read -r q_iops q50 q99 < <(run "$qsd" "$rw" "$depth")
    printf '%-15s %-14s %10s %10.1f %10.1f %7s\n' "$rw QD$depth" qsd "$q_iops" "$q50" "$q99" 1.00
    for name in plain enc; do
        uri="$plain"; [ "$name" = enc ] && uri="$enc"
        read -r f_iops f50 f99 < <(run "$uri" "$rw" "$depth")
        ratio="$(awk -v a="$f_iops" -v b="$q_iops" 'BEGIN { printf "%.2f", a / b }')"
        printf '%-15s %-14s %10s %10.1f %10.1f %7s\n' "$rw QD$depth" "ferrite-$name" "$f_iops" "$f50" "$f99" "$ratio"
    done
done; done
