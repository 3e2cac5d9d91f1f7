#!/usr/bin/env bash
# bench/dns.sh: the `dns` mode of bench/run.sh (run it as `bench/run.sh dns`, which builds the
# release binaries and starts this script as pid 1 of a throwaway host: fresh net, mount and pid
# namespaces, so everything started here dies with it).
#
# Compares, side by side in one run, berth's embedded DNS server with aardvark-dns (Podman's DNS
# server, Debian package aardvark-dns, run standalone), both serving the same network: berth's
# network n1 with two sandboxes, a and b. aardvark-dns gets a config file that describes n1 as
# berth has it (gateway, sandboxes, addresses, names) and listens on n1's gateway, port 53, as
# under Podman. The client, dns-load, runs in sandbox a's network namespace and asks
#   (a) berth: 127.0.0.11:53 (what a's /etc/resolv.conf names; DNATed to berthd's listener);
#   (b) aardvark-dns: <n1 gateway>:53 (it tells containers apart by their source address);
# two questions, interleaved (berth, aardvark, aardvark, berth, ... for --rounds rounds):
#   local:     A of "b", the other sandbox's name (answered from the server's own table);
#   forwarded: A of www.example.test (not local: relayed to the upstream resolver).
# The upstream is dns-upstream in a LAN peer namespace at 192.0.2.53 (TESTING.md's topology),
# answering every A with 203.0.113.7; this host's /etc/resolv.conf is, in this mount namespace
# only, a bind mount of a file naming 192.0.2.53, so berthd and aardvark-dns forward there and
# nowhere else. Before the rounds each server is asked each question once and must answer what
# it should (b's address; 203.0.113.7); a server that fails a check is not measured for it.
# Figures: answers per second with --concurrency queries outstanding (over --sockets sockets),
# latency p50/p99 of those answers, failures (timeouts, RCODEs, empty answers), the server
# process's CPU time (user + system, all threads; berthd is otherwise idle here) per query sent,
# and for the forwarded name how many queries reached the upstream per query sent (1.00 without a
# cache). The client shares the machine's cores with the server, so answers/s is what the server
# manages with what the client leaves it; the CPU figure does not depend on that share.
# aardvark-dns's RSS is reported (idle, after the rounds, peak); berthd's is not, since berthd
# does much more than DNS.
#
# Prints one table with the ratios berth/aardvark-dns and the goal (reported, not asserted:
# local-name answers/s >= 1.5x aardvark-dns); writes JSON to bench/results/dns-*.json.
#
#   --rounds N          interleaved rounds (3)
#   --seconds S         length of each measurement (3; after a 0.5 s warm-up)
#   --concurrency N     queries outstanding at all times (32)
#   --sockets N         client sockets (one thread each) they are spread over (4)
#   --install-peers     when aardvark-dns is missing, fetch Debian's aardvark-dns package and
#                       extract the binary into target/bench-peers/ (done by bench/run.sh before
#                       it enters the throwaway host); the package is not installed.
#   --prepare           (bench/run.sh's outer step) only the --install-peers fetch, then exit.
set -euo pipefail

rounds=3
seconds=3
concurrency=32
sockets=4
install_peers=0
prepare=0
while [ $# -gt 0 ]; do
    case $1 in
        --rounds) rounds=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --concurrency) concurrency=$2; shift 2 ;;
        --sockets) sockets=$2; shift 2 ;;
        --install-peers) install_peers=1; shift ;;
        --prepare) prepare=1; shift ;;
        *) echo "bench/dns.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

source bench/lib.sh
find_aardvark() { find_peer_binary aardvark-dns aardvark-dns usr/lib/podman/aardvark-dns; }

# --- Outside the throwaway host: fetch the peer (never run it here). ----------------------------
if [ "$prepare" = 1 ]; then
    if [ "$install_peers" = 1 ] && [ -z "$(find_aardvark)" ]; then
        fetch_peer_binary aardvark-dns usr/lib/podman/aardvark-dns
    fi
    exit 0
fi

# --- Inside the throwaway host. -----------------------------------------------------------------
[ "$$" -eq 1 ] || { echo "bench/dns.sh: refusing to run outside a fresh pid namespace (use bench/run.sh dns)" >&2; exit 1; }
work=${BERTH_BENCH_WORK:?bench/dns.sh: started without BERTH_BENCH_WORK (use bench/run.sh dns)}
sock=$work/berth.sock
load=$PWD/target/release/dns-load
berth() { target/release/berth --socket "$sock" "$@"; }
for bin in dns-load dns-upstream berthd berth; do
    [ -x "target/release/$bin" ] || { echo "bench/dns.sh: target/release/$bin is not built" >&2; exit 1; }
done

aardvark=$(find_aardvark)
aardvark_note=""
aardvark_package=""
if [ -z "$aardvark" ]; then
    aardvark_note="not installed (Debian package aardvark-dns; rerun with --install-peers to fetch it)"
    warn "aardvark-dns $aardvark_note; its column is skipped"
else
    aardvark_package=$(peer_package aardvark-dns)
fi

# Everything started in the background is stopped on the way out, whatever happens (the pid
# namespace would end them anyway when this script, its pid 1, exits).
aardvark_pid=""
cleanup() {
    if [ -n "$aardvark_pid" ]; then kill "$aardvark_pid" 2>/dev/null || true; fi
    if [ -n "${upstream_pid:-}" ]; then kill "$upstream_pid" 2>/dev/null || true; fi
    if [ -n "${berthd_pid:-}" ]; then
        kill -TERM "$berthd_pid" 2>/dev/null || true
        wait "$berthd_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

# --- The topology of TESTING.md: host 192.0.2.1 (lan0) <-> LAN peer 192.0.2.2 (eth0), which
# also holds 192.0.2.53, the upstream resolver. ---------------------------------------------------
start_lan_peer "$work"
inpeer ip addr add 192.0.2.53/24 dev eth0

# --- The fake upstream resolver in the peer, and this host's resolv.conf pointing at it. --------
upstream=192.0.2.53
upstream_answer=203.0.113.7
upstream_stats=$work/upstream.json
# (nsenter itself, not the inpeer function, so $! is the server's own pid: nsenter execs it.)
nsenter --net="/proc/$peer/ns/net" -- target/release/dns-upstream --listen "$upstream:53" --a "$upstream_answer" --threads "$(nproc)" \
    --stats "$upstream_stats" 2>"$work/upstream.log" &
upstream_pid=$!
for _ in $(seq 100); do [ -s "$upstream_stats" ] && break; sleep 0.05; done
[ -s "$upstream_stats" ] || { echo "dns-upstream did not start:" >&2; cat "$work/upstream.log" >&2; exit 1; }
# Private mount namespace (bench/run.sh's unshare --propagation private): the machine's own
# /etc/resolv.conf is not touched; berthd and aardvark-dns read this one.
printf 'nameserver %s\n' "$upstream" >"$work/resolv.conf"
mount --bind "$work/resolv.conf" /etc/resolv.conf
"$load" --server "$upstream:53" --name www.example.test --once >/dev/null ||
    { echo "bench/dns.sh: the upstream at $upstream:53 does not answer" >&2; exit 1; }

# --- berthd, network n1 and two sandboxes. ------------------------------------------------------
start_berthd "$work"

network=n1
berth network create --subnet 10.95.0.0/24 "$network" >/dev/null
berth run -d --name a --network "$network" -- sleep infinity >/dev/null
berth run -d --name b --network "$network" -- sleep infinity >/dev/null
# Of a sandbox: its id, netns path, address, gateway and names on n1 (name, aliases, hostname,
# short id: what berth's directory holds).
field() { # sandbox id|key|ip|gateway|names
    berth --format json inspect "$1" | python3 -c 'import json,sys
d = json.load(sys.stdin)[0]; n = d["NetworkSettings"]["Networks"][sys.argv[2]]
names = [d["Name"].lstrip("/")] + (n.get("Aliases") or []) + [d.get("Hostname") or "", d["Id"][:12]]
print({"id": d["Id"], "key": d["NetworkSettings"]["SandboxKey"], "ip": n["IPAddress"], "gateway": n["Gateway"],
       "names": ",".join(dict.fromkeys(x.lower() for x in names if x))}[sys.argv[1]])' "$2" "$network"
}
a_key=$(field a key)
a_ip=$(field a ip)
b_ip=$(field b ip)
gateway=$(field a gateway)
say "n1: gateway $gateway, a $a_ip, b $b_ip; client in a's namespace $a_key"
client() { nsenter --net="$a_key" -- "$load" "$@"; }
# The process serving a's 127.0.0.11 (berthd, which opens the listener's sockets inside a's
# namespace), for the CPU figures.
berth_dns_pid=$(nsenter --net="$a_key" ss -Hlunp 2>/dev/null | grep -o 'pid=[0-9]*' | head -n 1 | cut -d= -f2 || true)
berth_dns_pid=${berth_dns_pid:-$berthd_pid}
berth_listeners=$(nsenter --net="$a_key" ss -Hlntup 2>/dev/null | tr -s ' ' | paste -sd';' || true)

# --- aardvark-dns, standalone, configured for the same network (aardvark-dns 1.4's format: one
# file per network, named after it; first line the gateway address(es) comma-separated, then one
# line per container "ID IPV4S IPV6S NAMES", single spaces, lists comma-separated). ---------------
if [ -n "$aardvark" ]; then
    mkdir -p "$work/aardvark"
    {
        echo "$gateway"
        for sandbox in a b; do
            echo "$(field $sandbox id) $(field $sandbox ip)  $(field $sandbox names)"
        done
    } >"$work/aardvark/$network"
    # `run` forks: the parent returns once the child has written aardvark.pid into the config
    # directory, which happens before the child binds, so the socket is waited for below.
    if "$aardvark" --config "$work/aardvark" -p 53 run </dev/null >"$work/aardvark.log" 2>&1; then
        for _ in $(seq 100); do
            aardvark_pid=$(cat "$work/aardvark/aardvark.pid" 2>/dev/null || true)
            [ -n "$aardvark_pid" ] && ss -Hlun "src $gateway:53" | grep -q . && break
            sleep 0.05
        done
    fi
    if [ -z "$aardvark_pid" ] || ! ss -Hlun "src $gateway:53" | grep -q .; then
        aardvark_note="$aardvark did not start: $(tail -n 3 "$work/aardvark.log" | tr '\n' ' ')"
        warn "$aardvark_note"
        aardvark=""
    fi
fi
rss_kib() { awk -v f="$2" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null || true; }
aardvark_rss_idle=""
[ -n "$aardvark" ] && aardvark_rss_idle=$(rss_kib "$aardvark_pid" VmRSS:)

server_of() { # path
    case $1 in
        berth) echo "127.0.0.11:53" ;;
        aardvark) echo "$gateway:53" ;;
    esac
}
name_of() { # measure
    case $1 in
        local) echo b ;;
        forwarded) echo www.example.test ;;
    esac
}
expect_of() { # measure
    case $1 in
        local) echo "$b_ip" ;;
        forwarded) echo "$upstream_answer" ;;
    esac
}

# --- Checks: each server answers each question right once, or is not measured for it. ------------
checks=$work/checks.jsonl
: >"$checks"
measured=""   # "path/measure" pairs that passed
paths="berth"
[ -n "$aardvark" ] && paths="berth aardvark"
for path in $paths; do
    for measure in local forwarded; do
        server=$(server_of "$path")
        name=$(name_of "$measure")
        expect=$(expect_of "$measure")
        if out=$(client --server "$server" --name "$name" --once --timeout-ms 500 2>&1); then
            verdict=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1])
ok = r["rcode"] == "No Error" and sys.argv[2] in r["answers"]
print("ok" if ok else "answered %s %s, expected %s" % (r["rcode"], r["answers"], sys.argv[2]))' "$out" "$expect")
        else
            verdict="no answer: $(echo "$out" | tail -n 1)"
            out='null'
        fi
        python3 -c 'import json,sys; print(json.dumps({"path": sys.argv[1], "measure": sys.argv[2], "server": sys.argv[3],
    "name": sys.argv[4], "expect": sys.argv[5], "verdict": sys.argv[6], "reply": json.loads(sys.argv[7])}))' \
            "$path" "$measure" "$server" "$name" "$expect" "$verdict" "$out" >>"$checks"
        if [ "$verdict" = ok ]; then
            measured="$measured $path/$measure"
        else
            warn "check failed, $path not measured for the $measure name: $server asked $name: $verdict"
        fi
    done
done

pid_of() { # path
    case $1 in
        berth) echo "$berth_dns_pid" ;;
        aardvark) echo "$aardvark_pid" ;;
    esac
}
upstream_count() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["udp"] + d["tcp"])' "$upstream_stats"; }

# --- Interleaved rounds: the order of the two servers flips every round, so neither always runs
# first (or second) after the other. -----------------------------------------------------------
samples=$work/samples.jsonl
: >"$samples"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$rounds"); do
    order="berth aardvark"
    [ $((round % 2)) -eq 0 ] && order="aardvark berth"
    for measure in local forwarded; do
        for path in $order; do
            case " $measured " in *" $path/$measure "*) ;; *) continue ;; esac
            server=$(server_of "$path")
            say "round $round/$rounds: $measure name via $path ($server)"
            before=$(upstream_count)
            cpu_before=$(cpu_ms "$(pid_of "$path")")
            if ! result=$(client --server "$server" --name "$(name_of "$measure")" --expect "$(expect_of "$measure")" \
                --seconds "$seconds" --concurrency "$concurrency" --sockets "$sockets" 2>&1); then
                result=$(python3 -c 'import json,sys; print(json.dumps({"failed": sys.argv[1][-300:]}))' "$result")
            fi
            cpu_after=$(cpu_ms "$(pid_of "$path")")
            sleep 0.3 # the upstream rewrites its counts every 100 ms
            after=$(upstream_count)
            printf '{"round": %d, "measure": "%s", "path": "%s", "upstream_queries": %d, "server_cpu_ms": %s, "result": %s}\n' \
                "$round" "$measure" "$path" "$((after - before))" "$(awk -v a="$cpu_after" -v b="$cpu_before" 'BEGIN {print a - b}')" \
                "$result" >>"$samples"
        done
    done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

aardvark_rss_after=""
aardvark_hwm=""
aardvark_threads=""
if [ -n "$aardvark" ]; then
    aardvark_rss_after=$(rss_kib "$aardvark_pid" VmRSS:)
    aardvark_hwm=$(rss_kib "$aardvark_pid" VmHWM:)
    aardvark_threads=$(rss_kib "$aardvark_pid" Threads:)
fi

mkdir -p bench/results
file="bench/results/dns-$(date -u +%Y%m%dT%H%M%SZ).json"
python3 - "$file" "$samples" "$checks" "$rounds" "$seconds" "$concurrency" "$sockets" "${aardvark:-}" "$aardvark_note" \
    "$aardvark_package" "$aardvark_rss_idle" "$aardvark_rss_after" "$aardvark_hwm" "$aardvark_threads" \
    "$load_before" "$load_after" "$gateway" "$a_ip" "$b_ip" "$berth_listeners" <<'PY'
import json, os, statistics, sys
sys.path.insert(0, "bench")
from report import goals_record, num, write_json
(file, samples_path, checks_path, rounds, seconds, concurrency, sockets, av_path, av_note, av_package,
 av_rss_idle, av_rss_after, av_hwm, av_threads, load_before, load_after, gateway, a_ip, b_ip, berth_listeners) = sys.argv[1:]
rounds, seconds, concurrency, sockets = int(rounds), float(seconds), int(concurrency), int(sockets)
samples = [json.loads(line) for line in open(samples_path)]
checks = [json.loads(line) for line in open(checks_path)]
kib = lambda x: int(x) if x else None

# The figures of each measurement, and whether more is better.
FIGURES = {
    "qps": (lambda s: s["result"]["qps"], True),
    "p50_us": (lambda s: s["result"]["latency"]["p50_us"], False),
    "p99_us": (lambda s: s["result"]["latency"]["p99_us"], False),
    # CPU time of the server process (berthd; aardvark-dns) per query the client sent (warm-up
    # included): what answering costs, whatever share of the 2 cores the client left it.
    "cpu_us_per_query": (lambda s: s["server_cpu_ms"] * 1000 / s["result"]["sent"] if s["result"].get("sent") else None, False),
    # Queries that reached the upstream per query the client sent (warm-up included).
    "upstream_per_query": (lambda s: s["upstream_queries"] / s["result"]["sent"] if s["result"].get("sent") else None, None),
}
paths = ["berth", "aardvark"]
per = {}       # measure -> figure -> path -> [values per round]
by_round = {}  # measure -> figure -> round -> path -> value
failures = []
for s in samples:
    r, m, p = s["result"], s["measure"], s["path"]
    if "failed" in r:
        failures.append(f"round {s['round']} {m} via {p}: {r['failed']}")
        continue
    if r.get("failures"):
        kinds = {k: r[k] for k in ("timeouts", "empty", "truncated", "wrong", "errors") if r.get(k)}
        kinds.update(r.get("rcodes") or {})
        failures.append(f"round {s['round']} {m} via {p}: {r['failures']} failed of {r['answered'] + r['failures']} "
                        f"({', '.join(f'{k} {v}' for k, v in kinds.items())}); first: {r['first_error']}")
    for figure, (get, _) in FIGURES.items():
        if figure == "upstream_per_query" and m != "forwarded":
            continue
        v = get(s)
        if v is None:
            continue
        per.setdefault(m, {}).setdefault(figure, {}).setdefault(p, []).append(v)
        by_round.setdefault(m, {}).setdefault(figure, {}).setdefault(s["round"], {})[p] = v
medians = {m: {f: {p: statistics.median(v) for p, v in by_path.items() if v} for f, by_path in figs.items()}
           for m, figs in per.items()}

def median(m, f, p):
    return medians.get(m, {}).get(f, {}).get(p)

def ratio(m, f):
    a, b = median(m, f, "berth"), median(m, f, "aardvark")
    return a / b if a and b else None

def round_ratios(m, f):
    """berth/aardvark within each round (the two runs of a round are next to each other)."""
    return [r["berth"] / r["aardvark"] for _, r in sorted(by_round.get(m, {}).get(f, {}).items())
            if r.get("berth") and r.get("aardvark")]

failed_checks = {(c["path"], c["measure"]): c["verdict"] for c in checks if c["verdict"] != "ok"}
goals = {
    "local_qps_vs_aardvark": (ratio("local", "qps"), ">= 1.5", lambda x: x >= 1.5),
}
result = {
    "kernel": os.uname().release, "cpus": os.cpu_count(), "rounds": rounds, "seconds": seconds,
    "concurrency": concurrency, "sockets": sockets,
    "network": {"gateway": gateway, "client_a": a_ip, "b": b_ip},
    "servers": {"berth": "127.0.0.11:53 in sandbox a", "aardvark": f"{gateway}:53" if av_path else None},
    "berth_listeners_in_a": berth_listeners.split(";") if berth_listeners else [],
    "aardvark_dns": {"path": av_path or None, "package": av_package or None, "note": av_note or None,
                     "rss_kib_idle": kib(av_rss_idle), "rss_kib_after_rounds": kib(av_rss_after),
                     "rss_kib_peak": kib(av_hwm), "threads": kib(av_threads)},
    "checks": checks,
    "per_round": per, "medians": medians,
    "ratios": {m: {f: {"berth_to_aardvark": ratio(m, f), "per_round": round_ratios(m, f)} for f in figs}
               for m, figs in per.items()},
    "load_average": {"before_rounds": load_before, "after_rounds": load_after},
    "goals": goals_record(goals),
    "problems": failures + [f"check {p}/{m}: {v}" for (p, m), v in failed_checks.items()],
    "samples": samples,
}
write_json(file, result)

def cell(m, f, p, digits=2):
    if p == "aardvark" and not av_path:
        return "not installed" if "not installed" in av_note else "did not start"
    if (p, m) in failed_checks:
        return "check failed"
    return num(median(m, f, p), digits)

def met(key):
    v, g, t = goals[key]
    verdict = ("met" if t(v) else "MISSED") if v is not None else "n/a"
    return f"b/aardvark {g}: {verdict}"

print(f"berth DNS benchmark: {rounds} interleaved rounds of {seconds:g} s (berth, aardvark-dns); kernel {result['kernel']}, "
      f"{result['cpus']} cores; client in sandbox a ({a_ip}), {concurrency} queries outstanding over {sockets} UDP sockets; "
      f"berth at 127.0.0.11:53, aardvark-dns {f'at {gateway}:53' if av_path else 'not measured'}; "
      f"load average {load_before} before the rounds, {load_after} after")
print(f"{'measure (median)':<40}{'berth':>14}{'aardvark-dns':>15}{'b/aardvark':>12}  goal")
rows = [
    ("local name (b): answers/s", "local", "qps", 0, met("local_qps_vs_aardvark")),
    ("local name (b): p50 us", "local", "p50_us", 0, ""),
    ("local name (b): p99 us", "local", "p99_us", 0, ""),
    ("local name (b): server CPU us/query", "local", "cpu_us_per_query", 1, ""),
    ("forwarded (www.example.test): answers/s", "forwarded", "qps", 0, ""),
    ("forwarded: p50 us", "forwarded", "p50_us", 0, ""),
    ("forwarded: p99 us", "forwarded", "p99_us", 0, ""),
    ("forwarded: server CPU us/query", "forwarded", "cpu_us_per_query", 1, ""),
    ("forwarded: upstream queries per query", "forwarded", "upstream_per_query", 2, ""),
]
for label, m, f, digits, goal in rows:
    print(f"{label:<40}{cell(m, f, 'berth', digits):>14}{cell(m, f, 'aardvark', digits):>15}{num(ratio(m, f), 3):>12}  {goal}".rstrip())
av = result["aardvark_dns"]
if av_path:
    print(f"aardvark-dns RSS: {av['rss_kib_idle'] / 1024:.1f} MiB idle, {av['rss_kib_after_rounds'] / 1024:.1f} MiB after the rounds, "
          f"peak {av['rss_kib_peak'] / 1024:.1f} MiB, {av['threads']} threads [{av_package or av_path}]; "
          "berthd's RSS is not reported (it does much more than DNS)")
else:
    print(f"aardvark-dns column skipped: {av_note}")
for m in ("local", "forwarded"):
    for f in ("qps", "p99_us"):
        by = per.get(m, {}).get(f, {})
        if not by:
            continue
        print(f"per round {m} {f}: " + "; ".join(f"{p} " + ", ".join(num(v) for v in by[p]) for p in paths if p in by)
              + ("; b/aardvark " + ", ".join(num(x, 3) for x in round_ratios(m, f)) if "aardvark" in by and "berth" in by else ""))
for problem in result["problems"]:
    print(f"problem: {problem}")
PY
echo "written: $file"
