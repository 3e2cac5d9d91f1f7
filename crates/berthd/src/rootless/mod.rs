//! Rootless mode, the parent's side. berthd started by an ordinary user (or with `--rootless`)
//! checks what rootless mode needs ([`prerequisites`]), then starts itself again as the child in
//! new user, network and mount namespaces (berth_sys::userns has the handshake) and supervises
//! it: signals are passed on, and the parent exits with the child's status. The child runs the
//! rootful daemon unchanged, as root of its own namespaces, with the user's directories.
//! `berth run` enters its sandboxes through the child's user namespace (berth-sys `process`).
//! Its network namespace gets its way out through slirp4netns ([`slirp`]). Publishing ports to
//! the user's namespace comes next (docs/rootless.md says what exists).

mod prerequisites;
mod service;
mod slirp;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use berth_sys::userns::{self, Mapping};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};

pub use prerequisites::{check, RootlessUser};

/// Where a rootless berthd keeps its files by default, as the XDG base directories say.
#[derive(Debug, Clone)]
pub struct UserDirs {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
}

impl UserDirs {
    /// `$XDG_DATA_HOME/berth` (default `~/.local/share/berth`) and `$XDG_RUNTIME_DIR/berth`.
    pub fn from_env() -> anyhow::Result<Self> {
        let runtime = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()).context(
            "rootless berthd needs XDG_RUNTIME_DIR (a directory of the user's, as systemd's /run/user/UID): \
             log in with a session that sets it, or set it and --exec-root",
        )?;
        let data_home = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => {
                let home = std::env::var_os("HOME").filter(|v| !v.is_empty()).context("HOME is not set")?;
                PathBuf::from(home).join(".local/share")
            }
        };
        Ok(Self { data_root: data_home.join("berth"), exec_root: PathBuf::from(runtime).join("berth") })
    }
}

/// Where systemd-resolved lists the real upstream servers behind its 127.0.0.53 stub.
const SYSTEMD_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";

/// The resolv.conf whose nameservers a rootless berthd forwards its sandboxes' queries to:
/// /etc/resolv.conf, unless it names only loopback servers (systemd-resolved's 127.0.0.53),
/// which the child's network namespace cannot reach; then systemd-resolved's list of the real
/// ones, when there is one.
pub fn upstream_resolv_conf() -> PathBuf {
    let host = PathBuf::from("/etc/resolv.conf");
    let text = std::fs::read_to_string(&host).unwrap_or_default();
    let nameservers = berth_dns::upstreams::parse_resolv_conf(&text).nameservers;
    let only_loopback = !nameservers.is_empty() && nameservers.iter().all(|n| n.ip().is_loopback());
    if only_loopback && std::path::Path::new(SYSTEMD_RESOLV_CONF).exists() {
        tracing::info!(
            "rootless: /etc/resolv.conf names only loopback resolvers; forwarding to those of {SYSTEMD_RESOLV_CONF}"
        );
        return PathBuf::from(SYSTEMD_RESOLV_CONF);
    }
    host
}

/// How often the parent checks whether the child has ended.
const CHILD_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Starts the child with `child_args` (berthd's own, with every path explicit), maps its user
/// namespace, connects its network namespace (`host_loopback`: may reach the user's
/// 127.0.0.1 as 10.0.2.2), and waits for it; returns its exit code.
pub fn run_parent(user: RootlessUser, child_args: Vec<String>, host_loopback: bool) -> anyhow::Result<i32> {
    let RootlessUser { name: user, uid, gid, ranges } = user;
    let mut command = Command::new(std::env::current_exe().context("cannot find berthd's own binary")?);
    command.args(&child_args);
    let mut child = userns::spawn_child(command)?;
    child.wait_unshared()?;
    let mapping = userns::write_id_maps(child.child.id(), uid, gid, ranges)?;
    match mapping {
        Mapping::WithRanges { uids, gids } => tracing::info!(
            "rootless: root of the child namespace is uid {uid}, with subordinate uids {}+{} and gids {}+{}",
            uids.start,
            uids.count,
            gids.start,
            gids.count
        ),
        Mapping::OwnIdsOnly => tracing::warn!(
            "rootless: user {user} has no ranges in /etc/subuid and /etc/subgid; the child namespace maps uid {uid} \
             only (enough for berth; add ranges with usermod --add-subuids/--add-subgids for more)"
        ),
    }
    child.say_mapped()?;
    child.wait_network()?;
    // Dropped (slirp4netns stopped) once the child has ended.
    let mut slirp = slirp::start(child.child.id(), host_loopback)?;
    child.say_connected()?;
    let child_id = child.child.id();
    let service = child.service;
    std::thread::spawn(move || service::serve(service));
    let child_pid = Pid::from_raw(i32::try_from(child.child.id()).context("child pid")?);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let status = runtime.block_on(async move {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut tick = tokio::time::interval(CHILD_CHECK_INTERVAL);
        loop {
            tokio::select! {
                _ = term.recv() => { let _ = kill(child_pid, Signal::SIGTERM); }
                _ = int.recv() => { let _ = kill(child_pid, Signal::SIGTERM); }
                _ = tick.tick() => {
                    if let Some(status) = child.child.try_wait()? {
                        break Ok::<_, anyhow::Error>(status);
                    }
                    if slirp.has_ended() {
                        tracing::warn!("slirp4netns ended; starting it again");
                        match slirp::start(child_id, host_loopback) {
                            Ok(started) => slirp = started,
                            Err(e) => tracing::error!("{e:#}"),
                        }
                    }
                }
            }
        }
    })?;
    match status.code() {
        Some(code) => Ok(code),
        None => bail!("the rootless child ended by {status}"),
    }
}
