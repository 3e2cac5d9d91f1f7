#!/usr/bin/env bash
# bench/proxy.sh: the `proxy` mode of bench/run.sh (run it as `bench/run.sh proxy`, which builds
# the release binaries and starts this script as pid 1 of a throwaway host: fresh net, mount and
# pid namespaces, so everything started here dies with it).
#
# Compares, side by side in one run, interleaved (A,B,C,A,B,C... for --rounds rounds), three
# ways for a process of the host to reach a server in a sandbox:
#   (a) direct: to the sandbox's own address (routed over the bridge, no proxy);
#   (b) berth: berth's userland proxy (berth-proxy) on 127.0.0.1:PORT;
#   (c) docker-proxy: Debian's docker.io docker-proxy, run standalone on 127.0.0.1:PORT
#       (skipped, with a note, when it is not there; see --install-peers).
# Figures: bulk TCP throughput (iperf3, server in the sandbox); short connections per second
# (connect, 64-byte request, 64-byte reply, close; 64 concurrent) and request/response latency
# p50/p99 on a kept connection, both with proxy-load against its own echo server in a sandbox;
# UDP request/response packets per second (proxy-load, 16 sockets each with one datagram
# outstanding). With each, the relaying process's CPU time per GB, connection or request (the
# one berth-proxy; the docker-proxy of that port), which does not depend on the share of the
# cores the load client and the server leave it. Then memory and set-up time for --ports published ports (both families) in berth
# (one POST, what `berth port add` sends, timed at the API; RSS of berthd + berth-proxy) against
# docker-proxy's per-process RSS and start-up time measured over --docker-sample ports of one
# family and scaled to 2 x --ports processes (Docker runs one docker-proxy per port and family).
#
# Prints one table with the ratios berth/direct and berth/docker-proxy and the goals (reported,
# not asserted); writes JSON to bench/results/proxy-*.json.
#
#   --rounds N          interleaved rounds (3)
#   --seconds S         length of each measurement (3; iperf3 omits one more second)
#   --ports N           ports published at once in berth (1000)
#   --docker-sample N   docker-proxy processes started for the per-process figures (100)
#   --install-peers     when docker-proxy is missing, fetch Debian's docker.io package and
#                       extract docker-proxy into target/bench-peers/ (done by bench/run.sh
#                       before it enters the throwaway host). The package is not installed:
#                       its maintainer scripts would start dockerd, which would change the
#                       machine's own network namespace (docker0, iptables).
#   --prepare           (bench/run.sh's outer step) only the --install-peers fetch, then exit.
set -euo pipefail

rounds=3
seconds=3
ports=1000
sample=100
install_peers=0
prepare=0
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --ports) ports=$2; shift 2 ;;
        --docker-sample) sample=$2; shift 2 ;;
        --install-peers) install_peers=1; shift ;;
        --prepare) prepare=1; shift ;;
        *) echo "bench/proxy.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

source bench/lib.sh
find_docker_proxy() { find_peer_binary docker-proxy docker.io usr/sbin/docker-proxy; }

# --- Outside the throwaway host: fetch the peer (never run it here). ----------------------------
if [ "$prepare" = 1 ]; then
    if [ "$install_peers" = 1 ] && [ -z "$(find_docker_proxy)" ]; then
        fetch_peer_binary docker.io usr/sbin/docker-proxy
    fi
    exit 0
fi

# --- Inside the throwaway host. -----------------------------------------------------------------
[ "$$" -eq 1 ] || { echo "bench/proxy.sh: refusing to run outside a fresh pid namespace (use bench/run.sh proxy)" >&2; exit 1; }
work=${BERTH_BENCH_WORK:?bench/proxy.sh: started without BERTH_BENCH_WORK (use bench/run.sh proxy)}
sock=$work/berth.sock
load=$PWD/target/release/proxy-load
berth() { target/release/berth --socket "$sock" "$@"; }
[ -x target/release/berth-proxy ] || { echo "bench/proxy.sh: target/release/berth-proxy is not built" >&2; exit 1; }

docker_proxy=$(find_docker_proxy)
docker_note=""
if [ -z "$docker_proxy" ]; then
    docker_note="docker-proxy not found (Debian package docker.io); rerun with --install-peers to fetch it"
    warn "$docker_note; the docker-proxy column is skipped"
fi

ip link set lo up
# This namespace only: room for the short-connection test's TIME_WAIT sockets (every ephemeral
# port above the ports published here; TIME_WAIT reuse for outgoing connections).
sysctl -qw net.ipv4.ip_local_port_range="32768 65535" net.ipv4.tcp_tw_reuse=1

start_berthd "$work"

subnet=10.93.0.0/24
berth network create --subnet "$subnet" benchnet >/dev/null
berth run -d --name iperf --network benchnet -p 127.0.0.1:5201:5201 -- iperf3 -s -p 5201 >/dev/null
berth run -d --name echo --network benchnet -p 127.0.0.1:7000:7000 -p 127.0.0.1:7001:7001/udp -- \
    "$load" serve --tcp 7000 --udp 7001 >/dev/null
berth run -d --name many --network benchnet -- sleep infinity >/dev/null
field() {
    berth --format json inspect "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin)[0]["NetworkSettings"]
print(d["SandboxKey"] if sys.argv[1]=="key" else d["Networks"]["benchnet"]["IPAddress"])' "$2"
}
wait_listen() { # sandbox port tcp|udp
    local key flag=-Hltn
    key=$(field "$1" key)
    [ "$3" = udp ] && flag=-Hlun
    for _ in $(seq 200); do
        nsenter --net="$key" ss "$flag" "sport = :$2" | grep -q ":$2" && return
        sleep 0.05
    done
    echo "bench/proxy.sh: nothing listens on $2/$3 in $1" >&2
    exit 1
}
iperf_ip=$(field iperf ip)
echo_ip=$(field echo ip)
many_ip=$(field many ip)
wait_listen iperf 5201 tcp
wait_listen echo 7000 tcp
wait_listen echo 7001 udp

# docker-proxy, standalone, as Docker starts it: fd 3 open for writing; it writes 0 there once it
# listens (1 and a message when it fails). Sets dp_pid.
mkdir -p "$work/dp"
dp_start() { # proto host-ip host-port container-ip container-port
    local sig="$work/dp/$1-$3.sig"
    : >"$sig"
    "$docker_proxy" -proto "$1" -host-ip "$2" -host-port "$3" -container-ip "$4" -container-port "$5" \
        3>"$sig" </dev/null >/dev/null 2>>"$work/dp.log" &
    dp_pid=$!
    local i
    for i in $(seq 1000); do
        [ -s "$sig" ] && break
        sleep 0.005
    done
    if [ "$(head -c1 "$sig")" != 0 ]; then
        warn "docker-proxy -proto $1 $2:$3 -> $4:$5 did not come up: $(cat "$sig") $(tail -n 3 "$work/dp.log")"
        return 1
    fi
}

paths="direct berth"
if [ -n "$docker_proxy" ]; then
    if dp_start tcp 127.0.0.1 15201 "$iperf_ip" 5201 && dp_bulk_pid=$dp_pid &&
        dp_start tcp 127.0.0.1 17000 "$echo_ip" 7000 && dp_tcp_pid=$dp_pid &&
        dp_start udp 127.0.0.1 17001 "$echo_ip" 7001 && dp_udp_pid=$dp_pid; then
        paths="direct berth docker"
    else
        docker_note="$docker_proxy did not start (see the warning above)"
        docker_proxy=""
    fi
fi

addr_of() { # measure path
    case "$1/$2" in
        tcp_bulk/direct) echo "$iperf_ip 5201" ;;
        tcp_bulk/berth) echo "127.0.0.1 5201" ;;
        tcp_bulk/docker) echo "127.0.0.1 15201" ;;
        */direct) [ "$1" = udp ] && echo "$echo_ip 7001" || echo "$echo_ip 7000" ;;
        */berth) [ "$1" = udp ] && echo "127.0.0.1 7001" || echo "127.0.0.1 7000" ;;
        */docker) [ "$1" = udp ] && echo "127.0.0.1 17001" || echo "127.0.0.1 17000" ;;
    esac
}

# The process that relays a measurement's traffic on a path (none for direct): the one
# berth-proxy, or the docker-proxy of that port.
proxy_pid_of() { # measure path
    case "$2/$1" in
        berth/*) pgrep -x berth-proxy | head -n1 ;;
        docker/tcp_bulk) echo "$dp_bulk_pid" ;;
        docker/udp) echo "$dp_udp_pid" ;;
        docker/*) echo "$dp_tcp_pid" ;;
    esac
}

# One measurement; prints one JSON object ({"failed": "..."} when it did not run).
measure_one() { # measure ip port
    local out
    case $1 in
        tcp_bulk)
            if out=$(iperf3 -c "$2" -p "$3" -t "$seconds" -O 1 -J 2>&1); then
                python3 -c 'import json,sys; e=json.loads(sys.argv[1])["end"]; print(json.dumps({"bps": e["sum_received"]["bits_per_second"], "retransmits": e["sum_sent"].get("retransmits")}))' "$out"
            else
                python3 -c 'import json,sys
try: m=json.loads(sys.argv[1]).get("error")
except Exception: m=sys.argv[1][:300]
print(json.dumps({"failed": "iperf3: %s" % m}))' "$out"
            fi ;;
        conn|rr|udp)
            if ! out=$("$load" "$1" --addr "$2:$3" --seconds "$seconds" 2>&1); then
                out=$(python3 -c 'import json,sys; print(json.dumps({"failed": sys.argv[1][-300:]}))' "$out")
            fi
            echo "$out" ;;
    esac
}

samples=$work/samples.jsonl
: >"$samples"
# The machine's load around the rounds (other work on the same cores skews every column alike,
# which interleaving evens out, but it is worth knowing).
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$rounds"); do
    for measure in tcp_bulk conn rr udp; do
        for path in $paths; do
            read -r ip port <<<"$(addr_of "$measure" "$path")"
            say "round $round/$rounds: $measure via $path ($ip:$port)"
            proxy_pid=$(proxy_pid_of "$measure" "$path")
            cpu_before=$([ -n "$proxy_pid" ] && cpu_ms "$proxy_pid" || echo 0)
            result=$(measure_one "$measure" "$ip" "$port")
            cpu_after=$([ -n "$proxy_pid" ] && cpu_ms "$proxy_pid" || echo 0)
            printf '{"round": %d, "measure": "%s", "path": "%s", "proxy_cpu_ms": %s, "result": %s}\n' "$round" "$measure" "$path" \
                "$(awk -v a="$cpu_after" -v b="$cpu_before" 'BEGIN {print a - b}')" "$result" >>"$samples"
        done
    done
done

load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- Memory and set-up time for many published ports. -------------------------------------------
first=20000
last=$((first + ports - 1))
say "publishing $ports ports ($first-$last, both families) on one sandbox in one request"
publish=$("$load" publish --socket "$sock" --sandbox many --spec "$first-$last:$first-$last")
listeners=$(ss -Hltn "( sport >= :$first and sport <= :$last )" | wc -l)

docker_sample='null'
if [ -n "$docker_proxy" ]; then
    say "starting $sample docker-proxy processes (ports 21000-$((21000 + sample - 1)), one family), one after another as Docker does"
    pids=()
    start=$(date +%s.%N)
    for i in $(seq 0 $((sample - 1))); do
        dp_start tcp 127.0.0.1 $((21000 + i)) "$many_ip" $((21000 + i)) || break
        pids+=("$dp_pid")
    done
    end=$(date +%s.%N)
    rss=()
    for pid in "${pids[@]}"; do rss+=("$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")"); done
    docker_sample=$(python3 -c 'import json,sys; start,end=float(sys.argv[1]),float(sys.argv[2]); rss=[int(x) for x in sys.argv[3:]]
print(json.dumps({"processes": len(rss), "seconds": end-start, "rss_kib": rss}))' "$start" "$end" "${rss[@]}")
    kill "${pids[@]}" 2>/dev/null || true
fi

mkdir -p bench/results
file="bench/results/proxy-$(date -u +%Y%m%dT%H%M%SZ).json"
python3 - "$file" "$samples" "$publish" "$listeners" "$docker_sample" "$rounds" "$seconds" "$ports" "${docker_proxy:-}" "$docker_note" \
    "$(peer_package docker.io)" "$load_before" "$load_after" <<'PY'
import json, os, statistics, sys
sys.path.insert(0, "bench")
from report import goals_record, num, write_json
file, samples_path, publish, listeners, docker_sample, rounds, seconds, ports, dp_path, dp_note, dp_package, load_before, load_after = sys.argv[1:]
publish, docker_sample = json.loads(publish), json.loads(docker_sample)
rounds, seconds, ports, listeners = int(rounds), float(seconds), int(ports), int(listeners)
samples = [json.loads(line) for line in open(samples_path)]

# The figure of each measurement, and whether more is better.
# The proxy's CPU figures: its CPU time over the round (ms, times `scale`) divided by the work
# done; none for direct. What relaying a connection, a request or a gigabyte costs the proxy,
# whatever share of the cores the client and the server leave it.
def proxy_cpu(s, done, scale):
    return s["proxy_cpu_ms"] * scale / done if s["path"] != "direct" and done else None

FIGURES = {
    "tcp_bulk": ("Gbit/s", lambda s: s["result"]["bps"] / 1e9, True),
    "tcp_bulk_cpu": ("proxy CPU ms/GB", lambda s: proxy_cpu(s, s["result"]["bps"] / 8 * seconds / 1e9, 1), False),
    "conn": ("conn/s", lambda s: s["result"]["conns_per_s"], True),
    "conn_cpu": ("proxy CPU us/conn", lambda s: proxy_cpu(s, s["result"]["connections"], 1000), False),
    "rr_p50": ("us", lambda s: s["result"]["latency"]["p50_us"], False),
    "rr_p99": ("us", lambda s: s["result"]["latency"]["p99_us"], False),
    "udp": ("pps", lambda s: s["result"]["pps"], True),
    "udp_cpu": ("proxy CPU us/request", lambda s: proxy_cpu(s, s["result"]["answered"], 1000), False),
}
paths = ["direct", "berth", "docker"]
per = {}   # figure -> path -> [values per round]
by_round = {}  # figure -> round -> path -> value
failures = []
OF_MEASURE = {"tcp_bulk": ["tcp_bulk", "tcp_bulk_cpu"], "conn": ["conn", "conn_cpu"], "rr": ["rr_p50", "rr_p99"], "udp": ["udp", "udp_cpu"]}
for s in samples:
    for figure in OF_MEASURE[s["measure"]]:
        get = FIGURES[figure][1]
        r = s["result"]
        first_of_measure = figure == OF_MEASURE[s["measure"]][0]
        if "failed" in r:
            if first_of_measure:
                failures.append(f"round {s['round']} {s['measure']} via {s['path']}: {r['failed']}")
            continue
        if first_of_measure and s["measure"] == "conn" and r.get("errors"):
            failures.append(f"round {s['round']} conn via {s['path']}: {r['errors']} errors, first: {r['first_error']}")
        if first_of_measure and s["measure"] == "udp" and (r.get("lost") or r.get("errors")):
            failures.append(f"round {s['round']} udp via {s['path']}: {r['lost']} lost, {r['errors']} errors")
        value = get(s)
        if value is None:
            continue
        per.setdefault(figure, {}).setdefault(s["path"], []).append(value)
        by_round.setdefault(figure, {}).setdefault(s["round"], {})[s["path"]] = value
medians = {f: {p: statistics.median(v) for p, v in by_path.items() if v} for f, by_path in per.items()}

def ratio(figure, a, b):
    m = medians.get(figure, {})
    return m[a] / m[b] if m.get(a) and m.get(b) else None

def round_ratios(figure, a, b):
    """a/b within each round (the runs of one round are next to each other in time)."""
    return [r[a] / r[b] for _, r in sorted(by_round.get(figure, {}).items()) if r.get(a) and r.get(b)]

after = publish["after"]
total_mib = after["total_rss_kib"] / 1024
berth_ports = {
    "ports": ports, "host_sockets_listening": listeners, "seconds": publish["seconds"], "failure": publish["failure"],
    "rss_mib_total_after": total_mib,
    "rss_mib_berthd_after": after["berthd_rss_kib"] / 1024, "rss_mib_proxy_after": after["proxy_rss_kib"] / 1024,
    "rss_mib_total_before": publish["before"]["total_rss_kib"] / 1024,
    "proxy_processes": len(after["proxy_pids"]), "proxy_fds_after": after["proxy_fds"], "berthd_fds_after": after["berthd_fds"],
}
docker_ports = None
if docker_sample:
    n = docker_sample["processes"]
    per_process_kib = statistics.mean(docker_sample["rss_kib"])
    scale = 2 * ports / n
    docker_ports = {
        "sampled_processes": n, "sample_seconds": docker_sample["seconds"],
        "rss_mib_per_process": per_process_kib / 1024,
        "processes_for_ports": 2 * ports,
        "rss_mib_scaled": per_process_kib * 2 * ports / 1024,
        "seconds_scaled": docker_sample["seconds"] * scale,
        "sample_rss_kib": docker_sample["rss_kib"],
    }

goals = {
    "throughput_vs_direct": (ratio("tcp_bulk", "berth", "direct"), ">= 0.95", lambda x: x >= 0.95),
    "throughput_vs_docker": (ratio("tcp_bulk", "berth", "docker"), ">= 1.2", lambda x: x >= 1.2),
    "conn_vs_docker": (ratio("conn", "berth", "docker"), ">= 2", lambda x: x >= 2),
    "p99_vs_docker": (ratio("rr_p99", "berth", "docker"), "<= 1", lambda x: x <= 1),
    "udp_vs_docker": (ratio("udp", "berth", "docker"), ">= 2", lambda x: x >= 2),
    "ports_rss_mib": (total_mib, "< 32", lambda x: x < 32),
    "ports_seconds": (publish["seconds"], "< 1", lambda x: x < 1),
}
result = {
    "kernel": os.uname().release, "cpus": os.cpu_count(), "rounds": rounds, "seconds": seconds,
    "docker_proxy": {"path": dp_path or None, "package": dp_package or None, "note": dp_note or None},
    "per_round": per, "medians": medians,
    "load_average": {"before_rounds": load_before, "after_rounds": load_after},
    "ratios": {f: {"berth_to_direct": ratio(f, "berth", "direct"), "berth_to_docker": ratio(f, "berth", "docker"),
                   "berth_to_direct_per_round": round_ratios(f, "berth", "direct"),
                   "berth_to_docker_per_round": round_ratios(f, "berth", "docker")} for f in FIGURES},
    "published_ports": {"berth": berth_ports, "docker_proxy": docker_ports},
    "goals": goals_record(goals),
    "problems": failures,
    "samples": samples,
}
write_json(file, result)

def met(key, what="", unit=""):
    v, g, t = goals[key]
    verdict = ("met" if t(v) else "MISSED") if v is not None else "n/a"
    return f"{what}{g}{unit}: {verdict}"

print(f"berth userland-proxy benchmark: {rounds} interleaved rounds of {seconds:g} s (direct, berth, docker-proxy); "
      f"kernel {result['kernel']}, {result['cpus']} cores; clients in the host namespace, servers in sandboxes; "
      f"load average {load_before} before the rounds, {load_after} after")
print(f"{'measure (median)':<30}{'direct':>11}{'berth':>11}{'docker-proxy':>14}{'b/direct':>10}{'b/docker':>10}  goal")
rows = [
    ("TCP bulk Gbit/s (iperf3)", "tcp_bulk", f"{met('throughput_vs_direct', 'b/direct ')}; {met('throughput_vs_docker', 'b/docker ')}"),
    ("  proxy CPU ms per GB", "tcp_bulk_cpu", ""),
    ("short conn/s (64 conc.)", "conn", met("conn_vs_docker", "b/docker ")),
    ("  proxy CPU us per conn", "conn_cpu", ""),
    ("req/resp p50 us (kept conn)", "rr_p50", ""),
    ("req/resp p99 us (kept conn)", "rr_p99", met("p99_vs_docker", "b/docker ")),
    ("UDP req/resp pps (16 socks)", "udp", met("udp_vs_docker", "b/docker ")),
    ("  proxy CPU us per request", "udp_cpu", ""),
]
for label, figure, goal in rows:
    m = medians.get(figure, {})
    print(f"{label:<30}{num(m.get('direct')):>11}{num(m.get('berth')):>11}{num(m.get('docker')):>14}"
          f"{num(ratio(figure, 'berth', 'direct'), 3):>10}{num(ratio(figure, 'berth', 'docker'), 3):>10}  {goal}")
d = docker_ports or {}
rss_ratio = total_mib / d["rss_mib_scaled"] if d else None
time_ratio = publish["seconds"] / d["seconds_scaled"] if d else None
print(f"{f'{ports} ports: RSS MiB':<30}{'-':>11}{num(total_mib, 1):>11}{num(d.get('rss_mib_scaled'), 1):>14}{'-':>10}{num(rss_ratio, 4):>10}  {met('ports_rss_mib', 'berth ', ' MiB')}")
print(f"{f'{ports} ports: set-up s':<30}{'-':>11}{num(publish['seconds'], 3):>11}{num(d.get('seconds_scaled'), 2):>14}{'-':>10}{num(time_ratio, 4):>10}  {met('ports_seconds', 'berth ', ' s')}")
print(f"berth, {ports} ports on both families in one request: {listeners} listening sockets, "
      f"{berth_ports['proxy_processes']} berth-proxy process(es); RSS berthd {berth_ports['rss_mib_berthd_after']:.1f} + "
      f"proxy {berth_ports['rss_mib_proxy_after']:.1f} MiB (both {berth_ports['rss_mib_total_before']:.1f} MiB before); "
      f"fds berthd {berth_ports['berthd_fds_after']}, proxy {berth_ports['proxy_fds_after']}"
      + (f"; failed: {publish['failure']}" if publish["failure"] else ""))
if d:
    print(f"docker-proxy: {d['sampled_processes']} processes (one port, one family each) in {d['sample_seconds']:.2f} s, "
          f"{d['rss_mib_per_process']:.1f} MiB RSS each; scaled x{2 * ports // d['sampled_processes']} to {2 * ports} processes "
          f"({ports} ports x 2 families, as Docker runs them)" + (f" [{dp_package}]" if dp_package else ""))
else:
    print(f"docker-proxy column skipped: {dp_note}")
for figure in ("tcp_bulk", "conn", "conn_cpu", "rr_p99", "udp", "udp_cpu"):
    by = per.get(figure, {})
    print(f"per round {figure}: " + "; ".join(f"{p} " + ", ".join(num(v) for v in by[p]) for p in paths if p in by)
          + ("; b/direct " + ", ".join(num(x, 3) for x in round_ratios(figure, "berth", "direct")) if "direct" in by else "")
          + ("; b/docker " + ", ".join(num(x, 3) for x in round_ratios(figure, "berth", "docker")) if "docker" in by else ""))
for problem in failures:
    print(f"problem: {problem}")
PY
echo "written: $file"
kill -TERM %1 2>/dev/null || true
wait %1 2>/dev/null || true
