#!/usr/bin/env bash
# berth's demo: a network, a web server sandbox on it and a second sandbox fetching its page.
#
# Runs scripts/setup.sh, then the demo inside a throwaway "host": fresh network, mount and pid
# namespaces made with unshare. berthd, its bridges, veth pairs, sandbox namespaces and every
# process live in there and die with it; the machine's own network namespace is never touched
# and no traffic leaves the throwaway host. The temporary directory is removed on exit, pass or
# fail. Run it as root.
set -euo pipefail

repo=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)

# ---------------------------------------------------------------------------------------------
# Inside the throwaway host (pid 1 of its pid namespace): the demo itself.
# ---------------------------------------------------------------------------------------------
if [ "${1:-}" = "--inside" ]; then
    # Only ever as pid 1 of the pid namespace unshare made below, never in the machine's own.
    if [ "$$" -ne 1 ] || [ "$#" -ne 2 ]; then
        echo "demo.sh: --inside is internal: run scripts/demo.sh without arguments" >&2
        exit 2
    fi
    workdir=$2
    export PATH="$repo/target/debug:$PATH"
    export BERTH_SOCKET="$workdir/berth.sock"
    log="$workdir/berthd.log"
    step_name="starting"
    berthd_pid=""

    step() { step_name=$*; printf '\n==> %s\n' "$*"; }
    show() { printf '$ %s\n' "$*"; "$@"; }
    fail() { printf '\ndemo: error: %s\n' "$*" >&2; exit 1; }
    finish() {
        local status=$?
        trap '' INT TERM
        if [ "$status" -ne 0 ]; then
            printf '\ndemo: FAILED during step: %s (exit status %s)\n' "$step_name" "$status" >&2
            if [ -s "$log" ]; then
                printf -- '--- last lines of the berthd log (%s) ---\n' "$log" >&2
                tail -n 40 "$log" >&2
                printf -- '--- end of the berthd log ---\n' >&2
            fi
        fi
        # Leaving kills everything in this pid namespace anyway; stopping berthd first is tidier.
        if [ -n "$berthd_pid" ] && kill -0 "$berthd_pid" 2>/dev/null; then
            kill -TERM "$berthd_pid" 2>/dev/null || true
        fi
        exit "$status"
    }
    trap finish EXIT
    # As pid 1 this shell gets no signal it has no handler for; these make Ctrl-C work.
    trap 'exit 130' INT
    trap 'exit 143' TERM

    step "bringing lo up in the throwaway host"
    show ip link set lo up
    # The host's resolvers are not the throwaway host's: berthd would forward names that are not
    # berth's to them. In this mount namespace only, resolv.conf names none.
    printf '# the demo host has no upstream resolver\n' >"$workdir/resolv.conf"
    mount --bind "$workdir/resolv.conf" /etc/resolv.conf

    step "starting berthd in the throwaway network namespace (log: $log)"
    printf '$ %s\n' "berthd --data-root $workdir/data --exec-root $workdir/exec --socket $BERTH_SOCKET &"
    NO_COLOR=1 berthd --data-root "$workdir/data" --exec-root "$workdir/exec" --socket "$BERTH_SOCKET" >"$log" 2>&1 &
    berthd_pid=$!
    for _ in $(seq 100); do
        berth version >/dev/null 2>&1 && break
        kill -0 "$berthd_pid" 2>/dev/null || fail "berthd exited before it was ready"
        sleep 0.1
    done
    berth version >/dev/null 2>&1 || fail "berthd did not answer on $BERTH_SOCKET within 10 s"
    show berth version

    step "creating a bridge network"
    show berth network create --subnet 10.77.0.0/24 demo

    step "starting a web server in a sandbox on it"
    site="$workdir/site"
    mkdir -p "$site"
    marker="berth demo page served from sandbox web"
    printf '<!doctype html>\n<title>berth demo</title>\n<h1>Hello from berth!</h1>\n<p>%s at 10.77.0.10</p>\n' \
        "$marker" >"$site/index.html"
    python=python3
    [ -x /usr/bin/python3 ] && python=/usr/bin/python3
    show berth run -d --name web --network demo --ip 10.77.0.10 -- \
        "$python" -m http.server 80 --bind 10.77.0.10 --directory "$site"

    step "waiting until the web server answers (from the throwaway host, through the bridge)"
    served=false
    for _ in $(seq 50); do
        if curl -sS -m 1 -o /dev/null http://10.77.0.10/ 2>/dev/null; then served=true; break; fi
        sleep 0.2
    done
    $served || fail "nothing answered on http://10.77.0.10/ within 10 s"
    echo "http://10.77.0.10/ answers"

    step "fetching the page from a second sandbox on the same network, by name (embedded DNS)"
    printf '$ %s\n' "berth run --rm --name fetcher --network demo -- curl -sS http://web/"
    page=$(berth run --rm --name fetcher --network demo -- curl -sS -m 5 http://web/) ||
        fail "the fetch from sandbox fetcher failed (exit status $?)"
    printf '%s\n' "$page"
    grep -qF "$marker" <<<"$page" || fail "the fetched page is not the one sandbox web serves"

    step "listing sandboxes"
    show berth ps

    step "inspecting the network"
    show berth network ls
    show berth network inspect demo

    step "cleaning up: removing the web sandbox and the network"
    show berth rm -f web
    # `run --rm` removes its sandbox when the command ends; make sure it is gone before the
    # network goes, since a network with endpoints cannot be removed.
    for _ in $(seq 50); do
        berth inspect fetcher >/dev/null 2>&1 || break
        sleep 0.1
    done
    show berth network rm demo
    remaining=$(berth ps --format json 2>/dev/null || true)
    case "$remaining" in
        ''|'[]') ;;
        *) fail "sandboxes are left after clean-up: $remaining" ;;
    esac

    step "stopping berthd (SIGTERM)"
    kill -TERM "$berthd_pid"
    status=0
    wait "$berthd_pid" || status=$?
    berthd_pid=""
    [ "$status" -eq 0 ] || fail "berthd exited with status $status after SIGTERM"
    echo "berthd stopped"
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# Outside: set up, make the throwaway host, run the part above in it, clean up.
# ---------------------------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || { echo "demo.sh: error: must be run as root (it creates namespaces)" >&2; exit 1; }

echo "==> setting up (scripts/setup.sh)"
"$repo/scripts/setup.sh"

workdir=""
inner_pid=""
cleanup() {
    local status=$?
    # A second Ctrl-C (or a TERM from a supervisor) must not cut the clean-up short.
    trap '' INT TERM
    if [ -n "$inner_pid" ] && kill -0 "$inner_pid" 2>/dev/null; then
        # unshare runs with --kill-child: its death takes the throwaway host with it.
        kill -KILL "$inner_pid" 2>/dev/null || true
        wait "$inner_pid" 2>/dev/null || true
    fi
    [ -n "$workdir" ] && rm -rf "$workdir"
    if [ "$status" -eq 0 ]; then
        echo
        echo "demo passed"
    else
        echo
        echo "demo FAILED (exit status $status); the throwaway host and its files are removed" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

workdir=$(mktemp -d /tmp/berth-demo.XXXXXX)
echo
echo "==> making a throwaway host: unshare --net --mount --pid --fork --mount-proc --propagation private"
unshare --net --mount --pid --fork --mount-proc --propagation private --kill-child=SIGKILL \
    -- bash "$repo/scripts/demo.sh" --inside "$workdir" &
inner_pid=$!
status=0
wait "$inner_pid" || status=$?
inner_pid=""
exit "$status"
