//! Waiting for the foreground process of `berth run` and `berth exec`. While it runs, berth
//! catches the signals that would end berth (INT, QUIT, TERM, HUP) and passes them on, so the
//! process decides how to stop and berth lives to report its status and clean up; the way the
//! process ended becomes berth's exit status. This module neither starts nor registers processes.

use std::fs::File;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ExitStatus};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{getpgrp, tcgetpgrp, Pid};
use tokio::signal::unix::{signal, SignalKind};

/// Catches the signals to forward, and SIGCHLD to learn when the child ends.
#[derive(Debug)]
pub struct SignalForwarder {
    child_exited: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl SignalForwarder {
    /// Catches the signals from now on: call it before spawning the child, so that a Ctrl-C
    /// between the spawn and the wait cannot end berth and leave the child unreported.
    pub fn install() -> io::Result<Self> {
        Ok(Self {
            child_exited: signal(SignalKind::child())?,
            interrupt: signal(SignalKind::interrupt())?,
            quit: signal(SignalKind::quit())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Forwards signals until the child ends, and reaps it. The child is reaped only here, after
    /// the last signal sent to it, so its pid cannot have been reused by the time `kill` runs.
    pub async fn wait(mut self, mut child: Child) -> io::Result<ExitStatus> {
        let pid = Pid::from_raw(i32::try_from(child.id()).expect("a pid fits in pid_t"));
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            tokio::select! {
                _ = self.child_exited.recv() => {}
                _ = self.interrupt.recv() => forward_unless_from_terminal(pid, Signal::SIGINT),
                _ = self.quit.recv() => forward_unless_from_terminal(pid, Signal::SIGQUIT),
                _ = self.terminate.recv() => forward(pid, Signal::SIGTERM),
                _ = self.hangup.recv() => forward(pid, Signal::SIGHUP),
            }
        }
    }
}

fn forward(pid: Pid, signal: Signal) {
    // The child may have just exited (it is a zombie until reaped): nothing to do then.
    let _ = kill(pid, signal);
}

/// Ctrl-C and Ctrl-\ on a terminal signal its whole foreground process group, to which the child
/// belongs with berth: forwarding would deliver them twice. Anything else (berth in the
/// background, no terminal) cannot have reached the child, so it is forwarded.
fn forward_unless_from_terminal(pid: Pid, signal: Signal) {
    if !terminal_signals_reach_child() {
        forward(pid, signal);
    }
}

/// Whether berth, and with it the child, is the foreground process group of its terminal.
fn terminal_signals_reach_child() -> bool {
    let Ok(terminal) = File::open("/dev/tty") else {
        return false;
    };
    tcgetpgrp(&terminal).is_ok_and(|foreground| foreground == getpgrp())
}

/// The exit status berth passes on: the child's exit code, or 128 + the signal that killed it,
/// as shells report it.
pub fn exit_code(status: ExitStatus) -> u8 {
    match (status.code(), status.signal()) {
        // An exit code is 0 to 255 on Linux.
        (Some(code), _) => u8::try_from(code).unwrap_or(1),
        (None, Some(signal)) => u8::try_from(128 + signal).unwrap_or(255),
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_pass_through_and_signals_add_128() {
        // Raw wait statuses: the exit code in the second byte, a signal in the low bits.
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(255 << 8)), 255);
        assert_eq!(exit_code(ExitStatus::from_raw(Signal::SIGKILL as i32)), 137);
        assert_eq!(exit_code(ExitStatus::from_raw(Signal::SIGINT as i32)), 130);
    }

    #[tokio::test]
    async fn a_child_that_exits_is_reaped_with_its_status() {
        let forwarder = SignalForwarder::install().unwrap();
        let child = std::process::Command::new("/bin/sh").args(["-c", "exit 7"]).spawn().unwrap();
        let status = forwarder.wait(child).await.unwrap();
        assert_eq!(exit_code(status), 7);
    }

    #[tokio::test]
    async fn a_terminate_signal_is_forwarded_to_the_child() {
        let forwarder = SignalForwarder::install().unwrap();
        let child = std::process::Command::new("/bin/sleep").arg("30").spawn().unwrap();
        let waiting = tokio::spawn(forwarder.wait(child));
        // Let the wait loop start, then signal this process as `kill -TERM berth` would.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        kill(Pid::this(), Signal::SIGTERM).unwrap();
        let status = waiting.await.unwrap().unwrap();
        assert_eq!(exit_code(status), 128 + Signal::SIGTERM as u8);
    }
}
