#!/usr/bin/env bash
# Prepares a fresh Debian 12 machine for berth: installs the Debian packages that the tests, the
# demo and the benchmarks use, then builds the workspace. Run it as root, with cargo installed.
# Safe to run again: packages already installed are not touched and cargo rebuilds only what
# changed.
#
#   scripts/setup.sh             # packages + debug build (target/debug/{berthd,berth})
#   scripts/setup.sh --release   # ... plus release builds of berthd and berth
set -euo pipefail

# Every Debian package the tests, demo and benchmarks use, in one place.
# uidmap (newuidmap/newgidmap), slirp4netns and rootlesskit are for rootless mode's tests and its
# benchmark; useradd (passwd) makes the throwaway users those tests run berthd as.
PACKAGES=(iproute2 nftables conntrack iperf3 curl python3 python3-venv python3-pip util-linux procps kmod bind9-dnsutils aardvark-dns uidmap slirp4netns rootlesskit passwd)

release=false
for arg in "$@"; do
    case "$arg" in
        --release) release=true ;;
        -h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup.sh: unknown argument: $arg (only --release is accepted)" >&2; exit 2 ;;
    esac
done

say() { printf '==> %s\n' "$*"; }
die() { printf 'setup.sh: error: %s\n' "$*" >&2; exit 1; }

cd "$(dirname "$(readlink -f "$0")")/.."

[ "$(id -u)" -eq 0 ] || die "must be run as root (it installs Debian packages; berth's tests and demo need root too). Try: sudo $0 $*"

# A root shell from sudo often lacks ~/.cargo/bin on its PATH; use rustup's usual place if so.
if ! command -v cargo >/dev/null 2>&1 && [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
    PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust first (https://rustup.rs), then run this again"
command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script expects Debian 12 (bookworm)"

installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }

missing=()
for pkg in "${PACKAGES[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done
if [ "${#missing[@]}" -eq 0 ]; then
    say "Debian packages already installed: ${PACKAGES[*]}"
else
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # No package may start a service on this machine: invoke-rc.d asks policy-rc.d, and 101
    # means "not allowed". Only a policy this script put there is removed again.
    policy=/usr/sbin/policy-rc.d
    created_policy=false
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy"
        created_policy=true
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if "$created_policy"; then
        rm -f "$policy"
        trap - EXIT
    fi
    for pkg in "${missing[@]}"; do
        installed "$pkg" || die "package $pkg is still not installed after apt-get install"
    done
fi

# The docker CLI for tests/docker_api.rs (berthd's Docker API driven by real Docker clients).
# Debian 12 ships it only inside docker.io, whose maintainer scripts would start dockerd (a
# docker0 bridge and iptables rules in this machine's namespace); so the package is downloaded,
# not installed, and only usr/bin/docker is extracted into target/test-tools/.
tools_dir="${CARGO_TARGET_DIR:-target}/test-tools"
if command -v docker >/dev/null 2>&1; then
    say "docker CLI: $(command -v docker)"
elif [ -x "$tools_dir/docker" ]; then
    say "docker CLI: $tools_dir/docker"
else
    say "fetching Debian's docker.io for its docker CLI (extracted into $tools_dir/, not installed)"
    tmp=$(mktemp -d /tmp/berth-setup.XXXXXX)
    trap 'rm -rf "$tmp"' EXIT
    if ! (cd "$tmp" && apt-get download -qq docker.io); then
        apt-get update -qq
        (cd "$tmp" && apt-get download -qq docker.io)
    fi
    mkdir -p "$tmp/x" "$tools_dir"
    dpkg-deb --fsys-tarfile "$tmp"/docker.io_*.deb | tar -x -C "$tmp/x" ./usr/bin/docker
    install -m 0755 "$tmp/x/usr/bin/docker" "$tools_dir/docker"
    say "docker CLI: $tools_dir/docker ($("$tools_dir/docker" --version))"
fi

# The Python docker SDK for tests/docker_api.rs, downloaded here once so the tests install it
# into their virtualenv offline (pip install --no-index --find-links).
if [ -z "$(ls "$tools_dir/wheels" 2>/dev/null)" ]; then
    say "downloading the Python docker SDK into $tools_dir/wheels"
    mkdir -p "$tools_dir/wheels"
    python3 -m pip download --quiet --disable-pip-version-check -d "$tools_dir/wheels" docker \
        || say "could not download the docker SDK: its test will skip"
fi

say "building the workspace: cargo build --workspace --locked"
cargo build --workspace --locked
if $release; then
    say "building release binaries: cargo build --release --locked -p berthd -p berth"
    cargo build --release --locked -p berthd -p berth
fi
say "setup done: binaries in target/debug$($release && echo ' and target/release')"
