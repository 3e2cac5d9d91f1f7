# bench/lib.sh: shell pieces the benchmark scripts share (sourced by nat.sh, proxy.sh, dns.sh):
# messages, a process's CPU time, finding or fetching a peer's binary from its Debian package,
# berthd start-up, and the LAN peer of TESTING.md's topology. Nothing here runs on its own.

peers_dir=target/bench-peers

say() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }

# cpu_ms PID: the CPU time (user + system, all threads) the process has used, in ms; 0 when it
# is gone.
clk_tck=$(getconf CLK_TCK)
cpu_ms() { awk -v hz="$clk_tck" '{print ($14 + $15) * 1000 / hz}' "/proc/$1/stat" 2>/dev/null || echo 0; }

# find_peer_binary COMMAND PACKAGE PATH: the first executable of `command -v COMMAND`, /PATH
# (where the Debian package installs it), other places peers use, and the copy fetch_peer_binary
# extracted into $peers_dir/PACKAGE/PATH; nothing when none exists.
find_peer_binary() {
    local command=$1 package=$2 path=$3 candidate
    for candidate in "$(command -v "$command" 2>/dev/null || true)" "/$path" "/usr/bin/$command" \
        "/usr/libexec/docker/$command" "/usr/libexec/podman/$command" "$peers_dir/$package/$path"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ]; then
            echo "$candidate"
            return
        fi
    done
}

# fetch_peer_binary PACKAGE PATH: downloads Debian's PACKAGE and extracts only PATH (relative,
# e.g. usr/sbin/docker-proxy) into $peers_dir/PACKAGE/, recording the .deb's name in
# $peers_dir/PACKAGE/package. The package is not installed. Runs outside the throwaway host.
fetch_peer_binary() {
    local package=$1 path=$2 tmp
    say "fetching Debian's $package for $path (extracted into $peers_dir/, not installed)"
    tmp=$(mktemp -d /tmp/berth-bench-peers.XXXXXX)
    if ! (cd "$tmp" && apt-get download "$package") >&2; then
        apt-get update >&2
        (cd "$tmp" && apt-get download "$package") >&2
    fi
    mkdir -p "$peers_dir/$package"
    dpkg-deb --fsys-tarfile "$tmp/${package}"_*.deb | tar -x -C "$peers_dir/$package" "./$path"
    basename "$tmp/${package}"_*.deb >"$peers_dir/$package/package"
    rm -rf "$tmp"
    say "$package: $peers_dir/$package/$path ($(cat "$peers_dir/$package/package"))"
}

# peer_package PACKAGE: what the table names the peer by: the fetched .deb, or the installed
# package's version.
peer_package() {
    cat "$peers_dir/$1/package" 2>/dev/null || dpkg-query -W -f="$1 \${Version}" "$1" 2>/dev/null || true
}

# start_berthd WORK: berthd with its state under WORK, logging warnings to WORK/berthd.log;
# returns once its socket answers, with berthd_pid set.
start_berthd() {
    local work=$1
    target/release/berthd --data-root "$work/data" --exec-root "$work/run" --socket "$work/berth.sock" \
        --log-level warn 2>"$work/berthd.log" &
    berthd_pid=$!
    for _ in $(seq 100); do [ -S "$work/berth.sock" ] && break; sleep 0.1; done
    [ -S "$work/berth.sock" ] || { echo "berthd did not start:" >&2; cat "$work/berthd.log" >&2; exit 1; }
}

# start_lan_peer WORK: TESTING.md's topology inside the throwaway host: this host 192.0.2.1
# (lan0) <-> LAN peer 192.0.2.2 (eth0), a network namespace of its own held by a process that
# dies with the host. Sets `peer` (that process's pid) and defines `inpeer CMD...`.
start_lan_peer() {
    local work=$1
    ip link set lo up
    unshare --net sh -c 'echo $$ >"$1"; exec sleep infinity' sh "$work/peer.pid" &
    for _ in $(seq 100); do [ -s "$work/peer.pid" ] && break; sleep 0.05; done
    peer=$(cat "$work/peer.pid")
    inpeer() { nsenter --net="/proc/$peer/ns/net" -- "$@"; }
    ip link add lan0 type veth peer name eth0 netns "$peer"
    ip addr add 192.0.2.1/24 dev lan0
    ip link set lan0 up
    inpeer ip link set lo up
    inpeer ip addr add 192.0.2.2/24 dev eth0
    inpeer ip link set eth0 up
}
