//! berth, the command line client of berthd: the clap definition of every command and the
//! dispatch to commands/, plus how an error ends the process (`Error: ...` on stderr, exit 1, or
//! docker's 126/127 when a command cannot be started). It holds no networking code and no state:
//! everything goes to berthd over its unix socket, except that `run` and `exec` start the user's
//! command themselves, inside the sandbox berthd made.

use berth::client;
mod commands;
mod foreground;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use berth_sys::process::ProcessError;
use berth_types::Version;
use clap::{Parser, Subcommand};

use crate::client::{decode, default_socket, route, Client};
use crate::commands::firewall::FirewallCommand;
use crate::commands::network::NetworkCommand;
use crate::commands::port::PortArgs;
use crate::commands::run::{ExecArgs, RunArgs};
use crate::commands::sandbox::AttachArgs;
use crate::commands::{firewall, network, port, run, sandbox};
use crate::output::{print_json, Format};

/// Container networking for Linux: the client of berthd.
#[derive(Debug, Parser)]
#[command(name = "berth", version)]
struct Cli {
    /// The unix socket berthd listens on [default: /run/berth/berth.sock for root, else the user's
    /// rootless berthd's $XDG_RUNTIME_DIR/berth/berth.sock]
    #[arg(long, global = true, env = "BERTH_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// How to print results: tables, or the API's JSON
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    format: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the versions of berth and berthd
    Version,
    /// Manage networks
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Run a command in a new sandbox
    Run(RunArgs),
    /// Make a sandbox of a network namespace another runtime created
    Attach(AttachArgs),
    /// Run a command in an existing sandbox
    Exec(ExecArgs),
    /// List sandboxes
    Ps,
    /// List the published ports of a sandbox, or publish (add) and unpublish (rm) ports
    Port(PortArgs),
    /// Manage berth's firewall rules
    #[command(subcommand)]
    Firewall(FirewallCommand),
    /// Show sandboxes as JSON
    Inspect {
        #[arg(required = true, value_name = "SANDBOX")]
        sandboxes: Vec<String>,
    },
    /// Stop the processes of sandboxes (TERM, then KILL after 10 s)
    Stop {
        #[arg(required = true, value_name = "SANDBOX")]
        sandboxes: Vec<String>,
    },
    /// Remove sandboxes
    Rm {
        /// Stop their processes first
        #[arg(short, long)]
        force: bool,
        #[arg(required = true, value_name = "SANDBOX")]
        sandboxes: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if error.use_stderr() => {
            // Bad input gets one line, like every other berth error; `--help` shows usage.
            let text = error.to_string();
            eprintln!("{}", text.lines().next().unwrap_or("error: invalid arguments"));
            return ExitCode::from(2);
        }
        Err(error) => error.exit(),
    };
    // One thread: `run` and `exec` fork, and a single-threaded process forks most simply.
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime");
    match runtime.and_then(|runtime| runtime.block_on(dispatch(cli))) {
        Ok(exit) => exit,
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::from(error.downcast_ref::<ProcessError>().map_or(1, run::spawn_failure_exit_code))
        }
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode> {
    let socket = cli.socket.clone().unwrap_or_else(|| {
        default_socket(nix::unistd::Uid::effective().as_raw(), std::env::var_os("XDG_RUNTIME_DIR").as_deref())
    });
    let client = Client::new(&socket);
    let format = cli.format;
    match cli.command {
        Command::Version => version(&client, format).await,
        Command::Network(command) => network::execute(&client, format, command).await,
        Command::Run(args) => run::run(&client, format, args).await,
        Command::Attach(args) => sandbox::attach(&client, format, args).await,
        Command::Exec(args) => run::exec(&client, args).await,
        Command::Ps => sandbox::ps(&client, format).await,
        Command::Port(args) => port::execute(&client, format, args).await,
        Command::Firewall(command) => firewall::execute(&client, command).await,
        Command::Inspect { sandboxes } => Ok(sandbox::inspect(&client, &sandboxes).await),
        Command::Stop { sandboxes } => Ok(sandbox::stop(&client, &sandboxes).await),
        Command::Rm { force, sandboxes } => Ok(sandbox::remove(&client, force, &sandboxes).await),
    }
}

async fn version(client: &Client, format: Format) -> Result<ExitCode> {
    if format == Format::Human {
        println!("berth {}", env!("CARGO_PKG_VERSION"));
    }
    let answer = client.get(&route(&["version"])).await?;
    match format {
        Format::Json => print_json(&answer),
        Format::Human => {
            let server: Version = decode(answer)?;
            println!("berthd {} (API {}, pid {})", server.version, server.api_version, server.pid);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = Cli::try_parse_from(["berth", "network", "ls", "--format", "json", "--socket", "/tmp/s"]).unwrap();
        assert_eq!(cli.format, Format::Json);
        assert_eq!(cli.socket, Some(PathBuf::from("/tmp/s")));
    }

    #[test]
    fn exec_takes_the_sandbox_then_the_command() {
        let cli = Cli::try_parse_from(["berth", "exec", "web", "--", "ip", "-br", "addr"]).unwrap();
        let Command::Exec(args) = cli.command else {
            panic!("parsed {:?}", cli.command);
        };
        assert_eq!(format!("{args:?}"), r#"ExecArgs { sandbox: "web", command: ["ip", "-br", "addr"] }"#);
    }
}
