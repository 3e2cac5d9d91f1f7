//! connect-bench: how long berthd takes to connect and disconnect a sandbox, and how much memory
//! it holds with many sandboxes. It makes N sandboxes on one bridge network, connects each to a
//! second network and disconnects it again, timing every request at the API (the CLI's process
//! start-up is left out), and reads berthd's RSS at the peak. Prints one JSON object.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use berth::client::{route, Client};
use berth_bench::{ms, percentile, status_kib};
use berth_types::{IpamConfig, NetworkConnect, NetworkCreate, NetworkDisconnect, SandboxCreate, Version};
use clap::Parser;
use serde_json::json;

#[derive(Debug, Parser)]
struct Args {
    /// berthd's API socket.
    #[arg(long)]
    socket: PathBuf,
    /// How many sandboxes.
    #[arg(long, default_value_t = 500)]
    count: usize,
}

fn summary(mut samples: Vec<Duration>) -> serde_json::Value {
    samples.sort();
    json!({
        "p50_ms": ms(percentile(&samples, 0.50)),
        "p99_ms": ms(percentile(&samples, 0.99)),
        "max_ms": ms(percentile(&samples, 1.0)),
    })
}

fn rss_kib(pid: u32) -> Result<u64> {
    status_kib(pid, "VmRSS:").context("cannot read berthd's resident memory")
}

fn network(name: &str, subnet: &str) -> NetworkCreate {
    NetworkCreate {
        name: name.into(),
        ipam_config: vec![IpamConfig { subnet: Some(subnet.into()), ..Default::default() }],
        ..Default::default()
    }
}

async fn timed<T>(samples: &mut Vec<Duration>, work: impl std::future::Future<Output = T>) -> T {
    let start = Instant::now();
    let out = work.await;
    samples.push(start.elapsed());
    out
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let client = Client::new(&args.socket);
    let version: Version = serde_json::from_value(client.get(&route(&["version"])).await?)?;
    client.post(&route(&["networks"]), &network("bench-home", "10.200.0.0/16")).await?;
    client.post(&route(&["networks"]), &network("bench-extra", "10.201.0.0/16")).await?;
    let rss_empty = rss_kib(version.pid)?;

    let (mut create, mut connect, mut disconnect, mut remove) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let names: Vec<String> = (0..args.count).map(|i| format!("bench-{i}")).collect();
    for name in &names {
        let request = SandboxCreate {
            name: name.clone(),
            network_mode: Some(berth_types::NetworkMode::Network("bench-home".into())),
            ..Default::default()
        };
        timed(&mut create, client.post(&route(&["sandboxes"]), &request)).await?;
    }
    for name in &names {
        let request = NetworkConnect { container: name.clone(), ..Default::default() };
        timed(&mut connect, client.post(&route(&["networks", "bench-extra", "connect"]), &request)).await?;
    }
    let rss_full = rss_kib(version.pid)?;
    for name in &names {
        let request = NetworkDisconnect { container: name.clone() };
        timed(&mut disconnect, client.post(&route(&["networks", "bench-extra", "disconnect"]), &request)).await?;
    }
    for name in &names {
        timed(&mut remove, client.delete(&format!("{}?force=true", route(&["sandboxes", name])))).await?;
    }
    client.delete(&route(&["networks", "bench-home"])).await?;
    client.delete(&route(&["networks", "bench-extra"])).await?;

    let report = json!({
        "sandboxes": args.count,
        "create_sandbox": summary(create),
        "connect": summary(connect),
        "disconnect": summary(disconnect),
        "remove_sandbox": summary(remove),
        "rss_kib_idle": rss_empty,
        "rss_kib_with_sandboxes": rss_full,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
