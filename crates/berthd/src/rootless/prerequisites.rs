//! What rootless mode needs of the machine, checked before anything starts, each missing piece
//! refused in one line that says how to get it: user namespaces, the uidmap helpers (when the
//! user has subordinate ranges), a usable /dev/net/tun and slirp4netns (for outbound traffic).

use std::fs::OpenOptions;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::bail;
use berth_sys::userns::{subordinate_range, IdRange};
use nix::unistd::{Gid, Uid};

/// The user a rootless berthd runs for, and the subordinate ranges it maps (none: only the
/// user's own ids).
#[derive(Debug)]
pub struct RootlessUser {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    pub ranges: Option<(IdRange, IdRange)>,
}

/// Checks everything rootless mode needs, the first missing piece being the error; returns the
/// user and its ranges.
pub fn check() -> anyhow::Result<RootlessUser> {
    let read = |path: &str| std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned());
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        bail!("rootless mode needs user namespaces, and user.max_user_namespaces is 0: set it above 0 (sysctl -w user.max_user_namespaces=15000)");
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        bail!("rootless mode needs user namespaces, and kernel.unprivileged_userns_clone is 0: set it to 1 (sysctl -w kernel.unprivileged_userns_clone=1)");
    }
    let uid = Uid::current();
    let name = nix::unistd::User::from_uid(uid).ok().flatten().map_or_else(|| uid.to_string(), |u| u.name);
    let user = RootlessUser { ranges: id_ranges(&name, uid), name, uid, gid: Gid::current() };
    if user.ranges.is_some() {
        for helper in ["newuidmap", "newgidmap"] {
            if find_in_path(helper).is_none() {
                bail!("rootless mode needs {helper} to map the user's /etc/subuid and /etc/subgid ranges: install Debian's uidmap package");
            }
        }
    }
    if let Err(e) = OpenOptions::new().read(true).write(true).open("/dev/net/tun") {
        let mode = std::fs::metadata("/dev/net/tun").map(|m| format!("{:04o}", m.permissions().mode() & 0o7777));
        match mode {
            Ok(mode) => bail!(
                "rootless mode needs /dev/net/tun for slirp4netns, and this user cannot open it ({e}; mode {mode}): \
                 make it 0666 as Debian's udev does (chmod 0666 /dev/net/tun, kept by a udev rule KERNEL==\"tun\", MODE=\"0666\")"
            ),
            Err(_) => bail!("rootless mode needs /dev/net/tun for slirp4netns, and it does not exist: load the tun module (modprobe tun)"),
        }
    }
    if find_in_path("slirp4netns").is_none() {
        bail!(
            "rootless mode needs slirp4netns for the sandboxes' outbound traffic: install Debian's slirp4netns package"
        );
    }
    Ok(user)
}

/// The user's subordinate uid and gid ranges, when it has both (both files are keyed by the
/// user's name or uid).
fn id_ranges(name: &str, uid: Uid) -> Option<(IdRange, IdRange)> {
    let uids = subordinate_range(Path::new("/etc/subuid"), name, uid.as_raw())?;
    let gids = subordinate_range(Path::new("/etc/subgid"), name, uid.as_raw())?;
    Some((uids, gids))
}

fn find_in_path(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|candidate| candidate.is_file())
}
