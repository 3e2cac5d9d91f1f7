//! Test support for crates whose tests touch the kernel's networking: [`in_fresh_netns`] runs a
//! test's body in a new network namespace, so nothing it does (links, nftables, sockets) can
//! reach the machine's own. The test binary re-runs itself under `unshare --net`, filtered to
//! the one test, and the child runs the body; the parent only checks that it passed.
//! [`can_run`] is how every test that needs root or a tool decides to skip: with a message,
//! except under CI or `BERTH_REQUIRE_ROOT=1`, where it fails, so a suite never goes green by
//! asserting nothing. It is a dev-dependency only and holds no berth logic.

use std::process::Command;

/// Set in the child to the name of the test whose body it runs.
const CHILD_TEST: &str = "BERTH_TEST_IN_NETNS";
/// The network namespace the test started in, which the child must not be in.
const PARENT_NETNS: &str = "BERTH_TEST_PARENT_NETNS";

fn netns_id() -> String {
    std::fs::read_link("/proc/self/ns/net").expect("read /proc/self/ns/net").display().to_string()
}

/// Whether a test that needs `what` can run (`available`). When it cannot, it is skipped with a
/// message saying why, unless skipping is not allowed (`CI=true` or `BERTH_REQUIRE_ROOT=1`):
/// then this panics, failing the test.
pub fn can_run(available: bool, what: &str) -> bool {
    if available {
        return true;
    }
    assert!(!skipping_forbidden(), "this test needs {what}, and CI or BERTH_REQUIRE_ROOT=1 forbids skipping it");
    eprintln!("skipped: this test needs {what}");
    false
}

/// Under CI (`CI=true`) or with `BERTH_REQUIRE_ROOT=1`, a test that cannot run fails.
fn skipping_forbidden() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("BERTH_REQUIRE_ROOT").is_ok_and(|v| v == "1")
}

/// Whether this process runs as root ([`can_run`] for tests that make namespaces).
pub fn can_run_as_root() -> bool {
    let root = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap_or(1) == 0;
    can_run(root, "root (it makes namespaces)")
}

/// Adds the IPv6 `address` (a /128, without duplicate address detection) to `lo` of the calling
/// thread's namespace, and waits until the kernel routes it and `::1` locally: the local route
/// of a new address comes from a work queue a moment later, and a datagram sent to it meanwhile
/// is lost.
pub fn add_local_ipv6(address: &str) {
    let status = Command::new("ip")
        .args(["addr", "add", &format!("{address}/128"), "dev", "lo", "nodad"])
        .status()
        .expect("run ip");
    assert!(status.success(), "cannot add {address} to lo");
    let routed = |address: &str| {
        Command::new("ip")
            .args(["-6", "route", "show", "table", "local", address])
            .output()
            .is_ok_and(|out| !out.stdout.is_empty())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !(routed(address) && routed("::1")) {
        assert!(std::time::Instant::now() < deadline, "{address} got no local route within 5 s");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Runs `body` in a fresh network namespace with `lo` up. `test` must be the test function's
/// full name as the test harness filters it (`--exact`). Without root the test is skipped with
/// a message (see [`can_run`]).
pub fn in_fresh_netns(test: &str, body: impl FnOnce()) {
    if std::env::var(CHILD_TEST).as_deref() == Ok(test) {
        let parent = std::env::var(PARENT_NETNS).expect("the parent names its namespace");
        assert_ne!(netns_id(), parent, "refusing to run {test} in the namespace the test started in");
        let status = Command::new("ip").args(["link", "set", "lo", "up"]).status().expect("run ip");
        assert!(status.success(), "cannot bring up lo in the test's namespace");
        body();
        return;
    }
    if !can_run_as_root() {
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let output = Command::new("unshare")
        .args(["--net", "--"])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_TEST, test)
        .env(PARENT_NETNS, netns_id())
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{test} failed in its namespace:\n{stdout}\n{stderr}"
    );
    eprint!("{stderr}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_that_cannot_run_skips_or_fails_as_the_environment_says() {
        assert!(can_run(true, "nothing"));
        let outcome = std::panic::catch_unwind(|| can_run(false, "something this machine lacks"));
        match outcome {
            Ok(ran) => assert!(!ran && !skipping_forbidden(), "skipped while skipping is forbidden"),
            Err(_) => assert!(skipping_forbidden(), "failed while skipping is allowed"),
        }
    }
}
