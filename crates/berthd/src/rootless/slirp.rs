//! Rootless mode's way out: Debian's slirp4netns gives the child's network namespace a tap0
//! (10.0.2.100/24, gateway 10.0.2.2, DNS 10.0.2.3, MTU 65520) and sends what leaves through it
//! on from the user's namespace with ordinary sockets. The sandboxes' traffic reaches tap0 by
//! the child's default route and leaves masqueraded, as it leaves a rootful host. The host's
//! loopback (10.0.2.2 as seen inside) is closed unless asked for. slirp4netns exits when the
//! parent does: it watches a pipe only the parent holds open. When it dies, the parent starts
//! another: its tap0 went with it, and the new one configures a new tap0 and route.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, Command};

use anyhow::{bail, Context};
use nix::fcntl::{fcntl, FcntlArg, FdFlag};

/// How the parent names the tap device in the child's namespace.
const TAP: &str = "tap0";

/// A running slirp4netns, stopped (and reaped) when dropped.
#[derive(Debug)]
pub struct Slirp {
    process: Child,
    /// Closing it tells slirp4netns to exit.
    exit: Option<OwnedFd>,
}

impl Slirp {
    /// Whether slirp4netns has ended (and was reaped).
    pub fn has_ended(&mut self) -> bool {
        self.process.try_wait().map_or(true, |status| status.is_some())
    }
}

impl Drop for Slirp {
    fn drop(&mut self) {
        drop(self.exit.take());
        let _ = self.process.wait();
    }
}

/// A pipe whose `inherited` end stays open across exec and whose other end does not.
fn pipe_with_inherited_end(inherited_is_write: bool) -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = nix::unistd::pipe().context("cannot make a pipe for slirp4netns")?;
    let (inherited, kept) = if inherited_is_write { (write, read) } else { (read, write) };
    fcntl(&kept, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).context("cannot set close-on-exec")?;
    Ok((inherited, kept))
}

/// Starts slirp4netns for the network namespace of the child `child_pid` and waits until tap0
/// is configured. Call it while the parent has one thread: the descriptors slirp4netns
/// inherits would otherwise leak into whatever another thread starts meanwhile.
pub fn start(child_pid: u32, host_loopback: bool) -> anyhow::Result<Slirp> {
    let (ready_for_slirp, ready) = pipe_with_inherited_end(true)?;
    let (exit_for_slirp, exit) = pipe_with_inherited_end(false)?;
    let mut command = Command::new("slirp4netns");
    command
        .args(["--configure", "--mtu", "65520"])
        .arg(format!("--ready-fd={}", ready_for_slirp.as_raw_fd()))
        .arg(format!("--exit-fd={}", exit_for_slirp.as_raw_fd()))
        .arg(format!("--userns-path=/proc/{child_pid}/ns/user"));
    if !host_loopback {
        command.arg("--disable-host-loopback");
    }
    command.arg(child_pid.to_string()).arg(TAP);
    let process = command.spawn().context("cannot start slirp4netns")?;
    drop((ready_for_slirp, exit_for_slirp));
    let slirp = Slirp { process, exit: Some(exit) };
    let mut byte = [0u8];
    match File::from(ready).read(&mut byte) {
        Ok(1) => Ok(slirp),
        _ => bail!("slirp4netns did not configure {TAP} in the rootless child's namespace (its messages are above)"),
    }
}
