//! The nftables firewall: berth's one table, `inet berth`, written by running `nft -f -` with a
//! script rendered by [`render`] (one atomic batch per call) and read back with
//! `nft -j list table inet berth`.
//!
//! It never names another table, never flushes the ruleset and never flushes or deletes the
//! user's hook chain. It does not set sysctls: forwarding, and `route_localnet` on the bridges
//! when [`crate::Ruleset::loopback_dnat`] is on, are the daemon's job (docs/firewall.md).

mod listing;
mod render;

use std::io::Write as _;
use std::process::{Child, Command, Output, Stdio};

use tracing::{debug, trace};

use crate::{Dnat, Firewall, FirewallError, RoutedPort, Ruleset};
use listing::Observed;
use render::{Content, TABLE};

const NFT: &str = "nft";

/// berth's nftables table, driven through the `nft` binary found on `PATH`.
#[derive(Debug, Clone, Default)]
pub struct NftFirewall {
    _private: (),
}

impl NftFirewall {
    pub fn new() -> Self {
        Self::default()
    }

    /// The JSON listing of berth's table, or None when the table does not exist.
    fn list_table(&self) -> Result<Option<String>, FirewallError> {
        let action = "list table inet berth";
        let output = Command::new(NFT)
            .args(["-j", "list", "table", "inet", "berth"])
            .stdin(Stdio::null())
            .output()
            .map_err(|source| FirewallError::Spawn { action: action.to_owned(), source })?;
        if output.status.success() {
            return String::from_utf8(output.stdout).map(Some).map_err(|e| FirewallError::Listing(e.to_string()));
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("No such file or directory") {
            return Ok(None);
        }
        Err(FirewallError::Nft { action: action.to_owned(), message: describe_error(&stderr, "") })
    }
}

impl Firewall for NftFirewall {
    fn apply(&self, ruleset: &Ruleset) -> Result<(), FirewallError> {
        let script = Content::of(ruleset)?.script();
        let action = format!(
            "apply the firewall for {} network(s) and {} port mapping(s)",
            ruleset.networks.len(),
            ruleset.dnats.len()
        );
        run_script(&action, &script)
    }

    fn add_dnats(&self, dnats: &[Dnat]) -> Result<(), FirewallError> {
        let script = render::add_dnats_script(dnats)?;
        run_script(&format!("add {} port mapping(s) to {TABLE}", dnats.len()), &script)
    }

    fn remove_dnats(&self, dnats: &[Dnat]) -> Result<(), FirewallError> {
        let script = render::remove_dnats_script(dnats)?;
        run_script(&format!("remove {} port mapping(s) from {TABLE}", dnats.len()), &script)
    }

    fn add_routed_ports(&self, ports: &[RoutedPort]) -> Result<(), FirewallError> {
        let script = render::add_routed_ports_script(ports);
        run_script(&format!("open {} routed port(s) in {TABLE}", ports.len()), &script)
    }

    fn remove_routed_ports(&self, ports: &[RoutedPort]) -> Result<(), FirewallError> {
        let script = render::remove_routed_ports_script(ports);
        run_script(&format!("close {} routed port(s) in {TABLE}", ports.len()), &script)
    }

    fn matches(&self, ruleset: &Ruleset) -> Result<bool, FirewallError> {
        let content = Content::of(ruleset)?;
        let Some(listing) = self.list_table()? else {
            debug!("table inet berth is missing");
            return Ok(false);
        };
        match Observed::parse(&listing)?.difference(&content) {
            Some(difference) => {
                debug!(%difference, "table inet berth differs from the ruleset");
                Ok(false)
            }
            None => Ok(true),
        }
    }
}

/// Runs `script` as one batch; `action` says what was asked, for errors.
pub(crate) fn run_script(action: &str, script: &str) -> Result<(), FirewallError> {
    if script.is_empty() {
        return Ok(());
    }
    let mut child = spawn_nft(action, script)?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // Written from another thread so nft can never block on a full stderr pipe meanwhile.
    let (written, output) = std::thread::scope(|scope| {
        let writer = scope.spawn(move || stdin.write_all(script.as_bytes()));
        let output = child.wait_with_output();
        (writer.join().expect("the stdin writer does not panic"), output)
    });
    outcome(action, script, written, output)
}

/// An `nft -f -` run of a short script, started and not yet waited for: the caller does other
/// work meanwhile and collects the result with [`NftRun::wait`]. Dropping it waits too, so no
/// `nft` is left unreaped.
#[derive(Debug)]
pub struct NftRun {
    child: Option<Child>,
    action: String,
    script: String,
    written: std::io::Result<()>,
}

impl NftRun {
    /// Starts `nft` on `script`, which must be short (a few KiB): it is written to nft's stdin
    /// at once, where the pipe's buffer holds it whatever nft is doing.
    pub(crate) fn start(action: String, script: String) -> Result<Self, FirewallError> {
        let mut child = spawn_nft(&action, &script)?;
        let written = child.stdin.take().expect("stdin is piped").write_all(script.as_bytes());
        Ok(Self { child: Some(child), action, script, written })
    }

    /// Waits for nft and says whether the script was applied.
    pub fn wait(mut self) -> Result<(), FirewallError> {
        let child = self.child.take().expect("an NftRun is waited for once");
        let output = child.wait_with_output();
        let written = std::mem::replace(&mut self.written, Ok(()));
        outcome(&self.action, &self.script, written, output)
    }
}

impl Drop for NftRun {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

/// `nft -f -`, started with its stdin and stderr piped, noted as berth's own writer.
fn spawn_nft(action: &str, script: &str) -> Result<Child, FirewallError> {
    debug!(action, bytes = script.len(), "running nft");
    trace!(script, "nft script");
    let child = Command::new(NFT)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| FirewallError::Spawn { action: action.to_owned(), source })?;
    crate::own_writes::note_writer(child.id());
    Ok(child)
}

/// What a finished nft run amounts to, from writing its script and waiting for it.
fn outcome(
    action: &str,
    script: &str,
    written: std::io::Result<()>,
    output: std::io::Result<Output>,
) -> Result<(), FirewallError> {
    let output = output.map_err(|source| FirewallError::Spawn { action: action.to_owned(), source })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let message = match written {
        Err(error) if stderr.trim().is_empty() => format!("cannot write the script: {error}"),
        _ => describe_error(&stderr, script),
    };
    Err(FirewallError::Nft { action: action.to_owned(), message })
}

/// nft's first error, with the part of the script it points at: nft prints
/// `/dev/stdin:LINE:FIRST-LAST: Error: MESSAGE`, then the whole line (which can hold thousands
/// of elements) and carets.
fn describe_error(stderr: &str, script: &str) -> String {
    let Some(line) = stderr.lines().find(|l| l.contains("Error:")) else {
        return stderr.lines().next().unwrap_or("no message").trim().to_owned();
    };
    let (location, message) = line.split_once("Error:").expect("the line holds Error:");
    let message = message.trim();
    let mut fields = location.trim_end_matches([':', ' ']).rsplit(':');
    let (Some(columns), Some(line_number)) = (fields.next(), fields.next()) else {
        return message.to_owned();
    };
    let (first, last) = columns.split_once('-').unwrap_or((columns, columns));
    let snippet =
        line_number.parse::<usize>().ok().zip(first.parse::<usize>().ok()).zip(last.parse::<usize>().ok()).and_then(
            |((line_number, first), last)| {
                let text = script.lines().nth(line_number.checked_sub(1)?)?;
                text.get(first.checked_sub(1)?..last.min(text.len()))
            },
        );
    match snippet {
        Some(snippet) => format!("{message} (at `{snippet}`)"),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_failing_element_not_the_whole_line() {
        // As nft 1.0.6 prints it when 192.0.2.5 . tcp . 9000 overlaps an element that exists.
        let script = "add table inet berth\nadd element inet berth dnat_addr4 { 192.0.2.5 . tcp . 9000 : 172.17.0.9, 192.0.2.6 . tcp . 9000 : 172.17.0.9 }\n";
        let stderr = "/dev/stdin:2:37-58: Error: Could not process rule: File exists\n\
                      add element inet berth dnat_addr4 { 192.0.2.5 . tcp . 9000 : 172.17.0.9, 192.0.2.6 . tcp . 9000 : 172.17.0.9 }\n\
                      \x20                                   ^^^^^^^^^^^^^^^^^^^^^^\n";
        assert_eq!(describe_error(stderr, script), "Could not process rule: File exists (at `192.0.2.5 . tcp . 9000`)");
    }

    #[test]
    fn errors_without_a_location_keep_the_message() {
        assert_eq!(
            describe_error("Error: No such file or directory\nlist table inet berth\n", ""),
            "No such file or directory"
        );
        assert_eq!(describe_error("nft: cannot open socket\n", ""), "nft: cannot open socket");
        assert_eq!(describe_error("", ""), "no message");
    }
}
