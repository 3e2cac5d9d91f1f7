//! Naming rules shared by the daemon and the CLI: what a network or sandbox may be called, and
//! the identifiers berth derives for the links it creates.

/// Longest name a network or sandbox may have.
pub const MAX_NAME_LEN: usize = 64;

/// Prefix of every host-side veth berth creates; reconcile treats such links as berth's own.
pub const HOST_VETH_PREFIX: &str = "bth";

/// Alias written on every link berth creates (bridges and host veths), so reconcile can tell
/// berth's links from anyone else's even when a user picked the bridge name.
pub const LINK_ALIAS_MARK: &str = "berth";

/// The bridge network driver's name, as networks record it (Docker's).
pub const BRIDGE_DRIVER: &str = "bridge";

/// The driver of a network created without one (Docker's default).
pub const DEFAULT_DRIVER: &str = BRIDGE_DRIVER;

/// Name of the network created on start unless `--no-default-network` is given.
pub const DEFAULT_NETWORK: &str = "bridge";

/// Bridge of the default network.
pub const DEFAULT_BRIDGE: &str = "berth0";

/// Option key (Docker's) that names a network's bridge.
pub const OPTION_BRIDGE_NAME: &str = "com.docker.network.bridge.name";

/// The driver and options of the default network: a bridge network on [`DEFAULT_BRIDGE`], as
/// Docker's default network is on `docker0`.
pub fn default_network_driver() -> (&'static str, std::collections::BTreeMap<String, String>) {
    (BRIDGE_DRIVER, std::collections::BTreeMap::from([(OPTION_BRIDGE_NAME.to_owned(), DEFAULT_BRIDGE.to_owned())]))
}

/// Checks a sandbox name (and hostnames and aliases): `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 64
/// characters.
pub fn validate_name(kind: &str, name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err(format!("invalid {kind} name \"\": a name must not be empty"));
    };
    if name.len() > MAX_NAME_LEN {
        return Err(format!("invalid {kind} name {name:?}: longer than {MAX_NAME_LEN} characters"));
    }
    if !first.is_ascii_alphanumeric() || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return Err(format!("invalid {kind} name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"));
    }
    Ok(())
}

/// Names Docker reserves for its own networks and modes: no user network may take one.
pub const PREDEFINED_NETWORKS: [&str; 4] = ["bridge", "host", "none", "default"];

/// Longest network name berth accepts.
pub const MAX_NETWORK_NAME_LEN: usize = 255;

/// Checks a network name as Docker does: anything but empty. berth only ever uses a network's
/// name as data (never in a kernel object's name, a path or nft text), so spaces and the like
/// are fine; it refuses control characters, which would break one-line output, and names
/// longer than 255 bytes. A pre-defined name is the caller's to refuse (403 in Docker).
pub fn validate_network_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("invalid network name \"\": a name must not be empty".into());
    }
    if name.len() > MAX_NETWORK_NAME_LEN {
        return Err(format!("invalid network name {name:?}: longer than {MAX_NETWORK_NAME_LEN} bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("invalid network name {name:?}: control characters are not allowed"));
    }
    Ok(())
}

/// Longest Linux interface name (IFNAMSIZ less the terminating nul).
pub const MAX_INTERFACE_NAME_LEN: usize = 15;

/// Checks a bridge name (what `-o com.docker.network.bridge.name=` may set): what the kernel
/// takes as an interface name, narrowed to `[a-zA-Z0-9][a-zA-Z0-9_.-]*` so that no name can
/// mean something else to nft (`*` is a wildcard there, quotes end a string) or to a shell.
pub fn validate_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_INTERFACE_NAME_LEN {
        return Err(format!(
            "invalid bridge name {name:?}: an interface name has 1 to {MAX_INTERFACE_NAME_LEN} characters"
        ));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')) {
        return Err(format!("invalid bridge name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"));
    }
    if name == "lo" {
        return Err("invalid bridge name \"lo\": it is the loopback interface".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        assert!(validate_name("network", "n1").is_ok());
        assert!(validate_name("network", "a.b_c-d").is_ok());
        assert!(validate_name("network", "").is_err());
        assert!(validate_name("network", "-x").is_err());
        assert!(validate_name("network", "a b").is_err());
        assert!(validate_name("network", &"a".repeat(64)).is_ok());
        assert!(validate_name("network", &"a".repeat(65)).is_err());
    }

    #[test]
    fn network_names_are_anything_printable() {
        for ok in ["n1", "test 01", "a/b", "ünïcode", "-x", &"a".repeat(255)] {
            assert_eq!(validate_network_name(ok), Ok(()), "{ok:?}");
        }
        for bad in ["", "a\nb", "tab\there", &"a".repeat(256)] {
            assert!(validate_network_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn interface_names_are_checked() {
        assert!(validate_interface_name("br-test").is_ok());
        assert!(validate_interface_name("a-very-long-name16").is_err());
        for bad in ["a/b", "lo", "br*", "br\"x", "br;x", "br x", "", ".", "..", "-br", "brüx"] {
            assert!(validate_interface_name(bad).is_err(), "{bad:?}");
        }
    }
}
