//! The open-file limit of berth's long-running processes: berthd holds a socket per published
//! host port and address family, berth-proxy two sockets and four pipe ends per relayed
//! connection, so both lift their soft limit at start, as Docker and systemd services do.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Lifts the soft RLIMIT_NOFILE to the hard limit; with CAP_SYS_RESOURCE (root) both go up to
/// the kernel's ceiling (fs.nr_open) first. Returns the limit in force afterwards.
pub fn raise_open_file_limit() -> nix::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let ceiling =
        std::fs::read_to_string("/proc/sys/fs/nr_open").ok().and_then(|text| text.trim().parse().ok()).unwrap_or(hard);
    if ceiling > hard && setrlimit(Resource::RLIMIT_NOFILE, ceiling, ceiling).is_ok() {
        return Ok(ceiling);
    }
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
        return Ok(hard);
    }
    Ok(soft)
}

/// The soft RLIMIT_NOFILE in force now.
pub fn open_file_limit() -> nix::Result<u64> {
    Ok(getrlimit(Resource::RLIMIT_NOFILE)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_reaches_at_least_the_hard_one() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let raised = raise_open_file_limit().unwrap();
        assert!(raised >= hard, "{raised} < {hard}");
        assert_eq!(open_file_limit().unwrap(), raised);
    }
}
