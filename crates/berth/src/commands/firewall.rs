//! `berth firewall reload`: asks berthd to apply its whole ruleset again, for when another tool
//! (a firewall service that restarted, a flush of the ruleset) removed berth's rules. berthd owns
//! the rules; this module only sends the request.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use crate::client::{route, Client};

#[derive(Debug, Subcommand)]
pub enum FirewallCommand {
    /// Apply berth's firewall rules again, after another tool removed them
    Reload,
}

pub async fn execute(client: &Client, command: FirewallCommand) -> Result<ExitCode> {
    match command {
        FirewallCommand::Reload => {
            client.post_empty(&reload_route()).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn reload_route() -> String {
    route(&["firewall", "reload"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reload_posts_to_the_firewall_route() {
        assert_eq!(reload_route(), "/v1/firewall/reload");
    }
}
