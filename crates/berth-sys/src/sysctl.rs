//! Writing sysctls. Entries under /proc/sys/net belong to the network namespace of the thread
//! that opens them, so callers write per-sandbox settings from a thread inside that namespace
//! (see `netns::run_in_netns`). It knows no setting names beyond the key it is given.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[error("cannot set sysctl {key} to {value}: {source}")]
pub struct SysctlError {
    pub key: String,
    pub value: String,
    #[source]
    pub source: io::Error,
}

/// Sets a sysctl given as its path under /proc/sys (`net/ipv6/conf/eth0/accept_ra`); the slash
/// form keeps interface names with dots intact.
pub fn set_sysctl(key: &str, value: &str) -> Result<(), SysctlError> {
    let path = PathBuf::from("/proc/sys").join(key);
    std::fs::write(&path, value).map_err(|source| SysctlError { key: key.to_owned(), value: value.to_owned(), source })
}
