#!/usr/bin/env bash
# bench/run.sh: runs berth's benchmarks in a throwaway host (fresh net, mount and pid namespaces;
# everything inside dies with it) and prints one table; the JSON goes to bench/results/.
#
#   bench/run.sh [connect] [--count N]   # connect/disconnect latency and RSS with N sandboxes (500)
#   bench/run.sh nat [--rounds N] [--mappings N] [--seconds S] [--spread K]
#                                       # iperf3 LAN peer -> sandbox, direct routing vs published
#                                       # port (DNAT), N interleaved rounds (3) of S seconds (3);
#                                       # time to publish the 1st vs the Nth port (1000). See
#                                       # bench/nat.sh.
#   bench/run.sh proxy [--rounds N] [--seconds S] [--ports N] [--docker-sample N] [--install-peers]
#                                       # host process -> sandbox: direct vs berth-proxy on
#                                       # 127.0.0.1 vs docker-proxy, interleaved: throughput,
#                                       # conn/s, p50/p99, UDP pps; RSS and set-up time of N
#                                       # published ports (1000). See bench/proxy.sh.
#   bench/run.sh dns [--rounds N] [--seconds S] [--concurrency N] [--sockets N] [--install-peers]
#                                       # sandbox -> embedded DNS: berth (127.0.0.11) vs
#                                       # aardvark-dns on the same network, interleaved: answers/s
#                                       # and p50/p99 for a sandbox's name and for a forwarded name
#                                       # (fake upstream in a LAN peer); aardvark-dns RSS. See
#                                       # bench/dns.sh.
#
# Needs root. Builds release binaries first. Touches nothing outside its namespaces.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."

mode=connect
case "${1:-}" in
    connect|nat|proxy|dns) mode=$1; shift ;;
esac

if [ "${BERTH_BENCH_INSIDE:-}" != 1 ]; then
    [ "$(id -u)" -eq 0 ] || { echo "bench/run.sh: run as root (it creates namespaces)" >&2; exit 1; }
    if [ "$mode" = proxy ]; then
        # Every binary, berth-proxy included; then the peer (docker-proxy) is fetched, if asked
        # to, before entering the throwaway host (which has no network).
        cargo build --release --locked --workspace --bins >&2
        bench/proxy.sh --prepare "$@"
    elif [ "$mode" = dns ]; then
        # berthd, berth and the DNS load client and upstream; then the peer (aardvark-dns) is
        # fetched, if asked to, before entering the throwaway host (which has no network).
        cargo build --release --locked -p berthd -p berth -p berth-proxy -p berth-bench >&2
        bench/dns.sh --prepare "$@"
    else
        # berthd starts berth-proxy (its userland proxy is on by default).
        cargo build --release --locked -p berthd -p berth -p berth-proxy -p berth-bench >&2
    fi
    work=$(mktemp -d /tmp/berth-bench.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    BERTH_BENCH_INSIDE=1 BERTH_BENCH_WORK=$work unshare --net --mount --pid --fork --mount-proc \
        --propagation private --kill-child=SIGKILL "$0" "$mode" "$@"
    exit
fi

if [ "$mode" = nat ]; then
    exec bench/nat.sh "$@"
fi
if [ "$mode" = proxy ]; then
    exec bench/proxy.sh "$@"
fi
if [ "$mode" = dns ]; then
    exec bench/dns.sh "$@"
fi

count=500
if [ "${1:-}" = "--count" ]; then count=$2; fi

# Inside the throwaway host.
[ "$$" -eq 1 ] || { echo "bench/run.sh: refusing to run outside a fresh pid namespace" >&2; exit 1; }
ip link set lo up
work=$BERTH_BENCH_WORK
target/release/berthd --data-root "$work/data" --exec-root "$work/run" --socket "$work/berth.sock" \
    --log-level warn 2>"$work/berthd.log" &
for _ in $(seq 100); do [ -S "$work/berth.sock" ] && break; sleep 0.1; done
[ -S "$work/berth.sock" ] || { echo "berthd did not start:" >&2; cat "$work/berthd.log" >&2; exit 1; }

result=$(target/release/connect-bench --socket "$work/berth.sock" --count "$count")
mkdir -p bench/results
file="bench/results/connect-$(date -u +%Y%m%dT%H%M%SZ).json"
{
    echo "{\"kernel\": \"$(uname -r)\", \"cpus\": $(nproc), \"result\":"
    echo "$result"
    echo "}"
} >"$file"

python3 - "$result" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"berth connect benchmark: {r['sandboxes']} sandboxes on one bridge, timed at the API")
print(f"{'operation':<16}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
for op in ("create_sandbox", "connect", "disconnect", "remove_sandbox"):
    s = r[op]
    print(f"{op:<16}{s['p50_ms']:>10.2f}{s['p99_ms']:>10.2f}{s['max_ms']:>10.2f}")
print(f"berthd RSS: {r['rss_kib_idle']/1024:.1f} MiB idle, {r['rss_kib_with_sandboxes']/1024:.1f} MiB with {r['sandboxes']} sandboxes (each on two networks)")
PY
echo "written: $file"
kill -TERM %1 2>/dev/null || true
wait
