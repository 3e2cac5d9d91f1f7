//! Test support for crates whose tests touch the kernel's networking: [`in_fresh_netns`] runs a
//! test's body in a new network namespace, so nothing it does (links, nftables, sockets) can
//! reach the machine's own. The test binary re-runs itself under `unshare --net`, filtered to
//! the one test, and the child runs the body; the parent only checks that it passed. It is a
//! dev-dependency only and holds no berth logic.

use std::process::Command;

/// Set in the child to the name of the test whose body it runs.
const CHILD_TEST: &str = "BERTH_TEST_IN_NETNS";
/// The network namespace the test started in, which the child must not be in.
const PARENT_NETNS: &str = "BERTH_TEST_PARENT_NETNS";

fn netns_id() -> String {
    std::fs::read_link("/proc/self/ns/net").expect("read /proc/self/ns/net").display().to_string()
}

/// Runs `body` in a fresh network namespace with `lo` up. `test` must be the test function's
/// full name as the test harness filters it (`--exact`). Without root the test is skipped with
/// a message.
pub fn in_fresh_netns(test: &str, body: impl FnOnce()) {
    if std::env::var(CHILD_TEST).as_deref() == Ok(test) {
        let parent = std::env::var(PARENT_NETNS).expect("the parent names its namespace");
        assert_ne!(netns_id(), parent, "refusing to run {test} in the namespace the test started in");
        let status = Command::new("ip").args(["link", "set", "lo", "up"]).status().expect("run ip");
        assert!(status.success(), "cannot bring up lo in the test's namespace");
        body();
        return;
    }
    if std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap_or(1) != 0 {
        eprintln!("skipping {test}: it needs root to run in a fresh network namespace (unshare --net)");
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
