//! Naming rules shared by the daemon and the CLI: what a network or sandbox may be called, and
//! the identifiers berth derives for the links it creates.

/// Longest name a network or sandbox may have.
pub const MAX_NAME_LEN: usize = 64;

/// Prefix of every host-side veth berth creates; reconcile treats such links as berth's own.
pub const HOST_VETH_PREFIX: &str = "bth";

/// Alias written on every link berth creates (bridges and host veths), so reconcile can tell
/// berth's links from anyone else's even when a user picked the bridge name.
pub const LINK_ALIAS_MARK: &str = "berth";

/// Name of the network created on start unless `--no-default-network` is given.
pub const DEFAULT_NETWORK: &str = "bridge";

/// Bridge of the default network.
pub const DEFAULT_BRIDGE: &str = "berth0";

/// Option key (Docker's) that names a network's bridge.
pub const OPTION_BRIDGE_NAME: &str = "com.docker.network.bridge.name";

/// Checks a network or sandbox name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 64 characters.
pub fn validate_name(kind: &str, name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err(format!("invalid {kind} name \"\": a name must not be empty"));
    };
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "invalid {kind} name {name:?}: longer than {MAX_NAME_LEN} characters"
        ));
    }
    if !first.is_ascii_alphanumeric()
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(format!(
            "invalid {kind} name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        ));
    }
    Ok(())
}

/// Checks a Linux interface name (what `-o com.docker.network.bridge.name=` may set).
pub fn validate_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!(
            "invalid bridge name {name:?}: an interface name has 1 to 15 characters"
        ));
    }
    if name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) || name == "." || name == ".." {
        return Err(format!("invalid bridge name {name:?}: not a valid interface name"));
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
    fn interface_names_are_checked() {
        assert!(validate_interface_name("br-test").is_ok());
        assert!(validate_interface_name("a-very-long-name16").is_err());
        assert!(validate_interface_name("a/b").is_err());
    }
}
