//! The commands of the CLI, one module per resource: each turns parsed arguments into API
//! requests and renders the answers. They hold no state and no networking code; `run` (with
//! `exec`) is the one that also starts a process, inside the sandbox berthd created.

pub mod firewall;
pub mod network;
pub mod port;
pub mod run;
pub mod sandbox;

use std::future::Future;
use std::process::ExitCode;

use serde_json::Value;

use crate::client::{route, Client};
use crate::output::print_json;

/// Applies `action` to every name, printing each failure and going on with the next name; the
/// exit status is a failure if any name failed (like `docker rm a b c`).
pub async fn for_each_name<F, Fut>(names: &[String], mut action: F) -> ExitCode
where
    F: FnMut(String) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut failed = false;
    for name in names {
        if let Err(error) = action(name.clone()).await {
            eprintln!("Error: {error:#}");
            failed = true;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints the objects found under `/v1/{collection}/{name}` as one JSON array, whatever
/// `--format` says (like `docker inspect`), and fails if any name was not found.
pub async fn inspect_each(client: &Client, collection: &str, names: &[String]) -> ExitCode {
    let mut found = Vec::new();
    let mut failed = false;
    for name in names {
        match client.get(&route(&[collection, name])).await {
            Ok(object) => found.push(object),
            Err(error) => {
                eprintln!("Error: {error}");
                failed = true;
            }
        }
    }
    print_json(&Value::Array(found));
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
