#!/usr/bin/env bash
# bench/nat.sh: the `nat` mode of bench/run.sh (run it as `bench/run.sh nat`, which builds the
# release binaries and starts this script as pid 1 of a throwaway host: fresh net, mount and pid
# namespaces, so everything started here dies with it).
#
# Measures, in one run:
#  1. bulk TCP throughput (iperf3, server in a sandbox, client in a LAN peer namespace) over
#     (a) direct routing to the sandbox's address and (b) the published port 192.0.2.1:5201,
#     interleaved a,b,a,b... for --rounds rounds; then the same again with --mappings other ports
#     published (does the DNAT lookup stay flat with many mappings?);
#  2. the time berthd takes to publish the 1st vs the Nth port (nat-bench, timed at the API), all
#     on one sandbox (--spread K: round-robin over K sandboxes, to tell the firewall's cost from
#     the answer's, which lists the sandbox's ports).
# Prints one table and writes JSON to bench/results/nat-*.json. Goals (reported, not asserted):
# DNAT >= 0.95x direct; adding a mapping O(1) (last-10 / first-10 median close to 1).
set -euo pipefail

rounds=3
mappings=1000
seconds=3
spread=1
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --mappings) mappings=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --spread) spread=$2; shift 2 ;;
        *) echo "bench/nat.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

[ "$$" -eq 1 ] || { echo "bench/nat.sh: refusing to run outside a fresh pid namespace (use bench/run.sh nat)" >&2; exit 1; }
work=${BERTH_BENCH_WORK:?bench/nat.sh: started without BERTH_BENCH_WORK (use bench/run.sh nat)}
sock=$work/berth.sock
berth() { target/release/berth --socket "$sock" "$@"; }
source bench/lib.sh

# --- The topology of TESTING.md: host 192.0.2.1 (lan0) <-> LAN peer 192.0.2.2 (eth0). ---------
start_lan_peer "$work"
ip route add default via 192.0.2.2 dev lan0

# --- berthd, a network and an iperf3 server in a sandbox, published on 5201. -------------------
start_berthd "$work"

subnet=10.90.0.0/24
berth network create --subnet "$subnet" benchnet >/dev/null
berth run -d --name iperf --network benchnet -p 5201:5201 -- iperf3 -s >/dev/null
inspect=$(berth --format json inspect iperf)
ip_of() { python3 -c 'import json,sys; d=json.loads(sys.argv[1])[0]["NetworkSettings"]; print(d[sys.argv[2]] if sys.argv[2]=="SandboxKey" else d["Networks"]["benchnet"]["IPAddress"])' "$inspect" "$1"; }
sandbox_ip=$(ip_of IPAddress)
sandbox_netns=$(ip_of SandboxKey)
for _ in $(seq 100); do
    nsenter --net="$sandbox_netns" ss -Hltn 'sport = :5201' | grep -q 5201 && break
    sleep 0.05
done

# Direct routing, for the comparison only. The peer gets a route to the container subnet via the
# host. berth's forward chain lets new connections into a network only from the same bridge or
# when they were DNATed (chain into-network: "ct status dnat accept", then "drop"), so a routed
# connection to the sandbox's address is dropped by design. berth jumps to the admin's chain
# user-hook before that verdict, so one accept rule there lets the direct flow in: it matches the
# peer's flows whose ORIGINAL destination is the container subnet. DNATed flows have 192.0.2.1 as
# original destination and never match it, so the published-port path is measured through
# berth's own rules only. Replies of both flows are accepted as established by berth's first rule.
inpeer ip route add "$subnet" via 192.0.2.1
if ! nft insert rule inet berth user-hook ip saddr 192.0.2.2 ct original ip daddr "$subnet" accept 2>"$work/nft.err"; then
    echo "warning: could not add the accept rule for the direct flow to inet berth user-hook: $(cat "$work/nft.err")" >&2
fi

# One iperf3 run from the peer; prints the received rate in bit/s (0 when it failed).
iperf() {
    local out
    if out=$(inpeer iperf3 -c "$1" -p 5201 -t "$seconds" -O 1 -J 2>&1); then
        python3 -c 'import json,sys; print(json.loads(sys.argv[1])["end"]["sum_received"]["bits_per_second"])' "$out"
    else
        echo "warning: iperf3 to $1:5201 failed: $(python3 -c 'import json,sys
try: print(json.loads(sys.argv[1]).get("error"))
except Exception: print(sys.argv[1][:300])' "$out")" >&2
        echo 0
    fi
}

# Interleaved rounds: direct, dnat, direct, dnat, ...; prints a JSON object of two lists.
measure() {
    local direct=() dnat=()
    for round in $(seq "$rounds"); do
        say "round $round/$rounds ($1): direct to $sandbox_ip:5201, then DNAT via 192.0.2.1:5201"
        direct+=("$(iperf "$sandbox_ip")")
        dnat+=("$(iperf 192.0.2.1)")
    done
    printf '{"direct_bps": [%s], "dnat_bps": [%s]}' "$(IFS=,; echo "${direct[*]}")" "$(IFS=,; echo "${dnat[*]}")"
}

throughput=$(measure "1 mapping")

# --- The time to publish the 1st ... Nth port (a second sandbox, ports 30000...). ----------------
say "publishing $mappings ports one request at a time"
adds=$(target/release/nat-bench --socket "$sock" --count "$mappings" --first-port 30000 --sandboxes "$spread")
table_lines=$( (nft list table inet berth 2>/dev/null || true) | wc -l)

throughput_many=$(measure "$mappings more mappings")

mkdir -p bench/results
file="bench/results/nat-$(date -u +%Y%m%dT%H%M%SZ).json"
python3 - "$file" "$throughput" "$throughput_many" "$adds" "$rounds" "$seconds" "$table_lines" <<'PY'
import json, os, statistics, sys
sys.path.insert(0, "bench")
from report import write_json
file, tp, tp_many, adds, rounds, seconds, table_lines = sys.argv[1:]
tp, tp_many, adds = json.loads(tp), json.loads(tp_many), json.loads(adds)

def summary(t):
    d, n = statistics.median(t["direct_bps"]), statistics.median(t["dnat_bps"])
    pairs = [b / a if a else 0 for a, b in zip(t["direct_bps"], t["dnat_bps"])]
    return {**t, "direct_median_bps": d, "dnat_median_bps": n,
            "ratio_dnat_to_direct": n / d if d else 0, "ratio_per_round": pairs}

result = {
    "kernel": os.uname().release, "cpus": os.cpu_count(), "rounds": int(rounds),
    "iperf3_seconds": int(seconds),
    "throughput": summary(tp),
    "throughput_with_many_mappings": summary(tp_many),
    "add_mapping": {k: v for k, v in adds.items()},
    "nft_table_lines_with_many_mappings": int(table_lines),
}
write_json(file, result)

t, m, a = result["throughput"], result["throughput_with_many_mappings"], adds
g = lambda bps: f"{bps / 1e9:.2f}"
print(f"berth NAT benchmark: iperf3 -t {seconds}, LAN peer -> sandbox, {rounds} interleaved rounds; kernel {result['kernel']}, {result['cpus']} CPUs")
print(f"{'measure':<44}{'direct':>10}{'DNAT':>10}{'ratio':>8}  goal")
print(f"{'TCP Gbit/s (median), 1 mapping':<44}{g(t['direct_median_bps']):>10}{g(t['dnat_median_bps']):>10}{t['ratio_dnat_to_direct']:>8.3f}  >= 0.95")
print(f"{'TCP Gbit/s (median), ' + str(a['published'] + 1) + ' mappings':<44}{g(m['direct_median_bps']):>10}{g(m['dnat_median_bps']):>10}{m['ratio_dnat_to_direct']:>8.3f}  >= 0.95")
print(f"{'':<44}{'first 10':>10}{'last 10':>10}{'ratio':>8}")
print(f"{'publish one port, p50 ms (' + str(a['published']) + ' on ' + str(a['sandboxes']) + ' sandbox(es))':<44}{a['first10_p50_ms']:>10.2f}{a['last10_p50_ms']:>10.2f}{a['ratio_last_to_first']:>8.2f}  ~1 (O(1))")
print(f"publish: p50 {a['p50_ms']:.2f} ms, p99 {a['p99_ms']:.2f} ms, max {a['max_ms']:.2f} ms, total {a['total_s']:.1f} s; "
      f"berthd RSS {a['rss_kib_before']/1024:.1f} -> {a['rss_kib_after']/1024:.1f} MiB, fds {a['fds_before']} -> {a['fds_after']}")
if a.get("failure"):
    print(f"publishing stopped at request {a['failure']['at']} (port {a['failure']['port']}): {a['failure']['message']}")
print(f"per-round DNAT/direct: {', '.join(f'{r:.3f}' for r in t['ratio_per_round'])}; with many mappings: {', '.join(f'{r:.3f}' for r in m['ratio_per_round'])}")
PY
echo "written: $file"
