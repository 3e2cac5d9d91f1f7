//! berth's state on disk: network and sandbox records in an embedded, crash-safe redb database
//! under the daemon's data root. Every [`Store::commit`] is one write transaction, so a change is
//! either wholly on disk or not at all. It stores records as given; it does not validate them or
//! know about the kernel.

use std::path::Path;

use berth_types::{NetworkRecord, SandboxRecord};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

const NETWORKS: TableDefinition<&str, &[u8]> = TableDefinition::new("networks");
const SANDBOXES: TableDefinition<&str, &[u8]> = TableDefinition::new("sandboxes");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state database {path}: {source}")]
    Open {
        path: String,
        #[source]
        source: redb::DatabaseError,
    },
    #[error("state database: {0}")]
    Database(String),
    #[error("state database holds a record that cannot be read: {0}")]
    Corrupt(#[from] serde_json::Error),
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

/// One change of a commit.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    PutNetwork(&'a NetworkRecord),
    DeleteNetwork(&'a str),
    PutSandbox(&'a SandboxRecord),
    DeleteSandbox(&'a str),
}

/// Everything the store holds.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub networks: Vec<NetworkRecord>,
    pub sandboxes: Vec<SandboxRecord>,
}

#[derive(Debug)]
pub struct Store {
    db: Database,
    /// With the `fault-injection` feature (for other crates' tests): commits fail while set.
    #[cfg(feature = "fault-injection")]
    refuse_commits: std::sync::atomic::AtomicBool,
}

impl Store {
    /// Opens (or creates) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db =
            Database::create(path).map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
        let txn = db.begin_write().map_err(db_err)?;
        txn.open_table(NETWORKS).map_err(db_err)?;
        txn.open_table(SANDBOXES).map_err(db_err)?;
        txn.commit().map_err(db_err)?;
        Ok(Self {
            db,
            #[cfg(feature = "fault-injection")]
            refuse_commits: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Makes every commit fail (`on`) or work again: a test's injected store failure.
    #[cfg(feature = "fault-injection")]
    pub fn refuse_commits(&self, on: bool) {
        self.refuse_commits.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// Reads every record.
    pub fn load(&self) -> Result<Snapshot, StoreError> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let mut snapshot = Snapshot::default();
        for entry in txn.open_table(NETWORKS).map_err(db_err)?.iter().map_err(db_err)? {
            let (_, value) = entry.map_err(db_err)?;
            snapshot.networks.push(serde_json::from_slice(value.value())?);
        }
        for entry in txn.open_table(SANDBOXES).map_err(db_err)?.iter().map_err(db_err)? {
            let (_, value) = entry.map_err(db_err)?;
            snapshot.sandboxes.push(serde_json::from_slice(value.value())?);
        }
        Ok(snapshot)
    }

    /// Applies `changes` in one durable transaction: all of them or none.
    pub fn commit(&self, changes: &[Change<'_>]) -> Result<(), StoreError> {
        #[cfg(feature = "fault-injection")]
        if self.refuse_commits.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Database("injected: the commit is refused".into()));
        }
        let txn = self.db.begin_write().map_err(db_err)?;
        {
            let mut networks = txn.open_table(NETWORKS).map_err(db_err)?;
            let mut sandboxes = txn.open_table(SANDBOXES).map_err(db_err)?;
            for change in changes {
                match change {
                    Change::PutNetwork(n) => {
                        networks.insert(n.id.as_str(), serde_json::to_vec(n)?.as_slice()).map_err(db_err)?;
                    }
                    Change::DeleteNetwork(id) => {
                        networks.remove(*id).map_err(db_err)?;
                    }
                    Change::PutSandbox(s) => {
                        sandboxes.insert(s.id.as_str(), serde_json::to_vec(s)?.as_slice()).map_err(db_err)?;
                    }
                    Change::DeleteSandbox(id) => {
                        sandboxes.remove(*id).map_err(db_err)?;
                    }
                }
            }
        }
        txn.commit().map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_types::{SandboxMode, SubnetRecord};
    use std::collections::BTreeMap;

    fn network(id: &str) -> NetworkRecord {
        NetworkRecord {
            id: id.into(),
            name: format!("net-{id}"),
            driver: "bridge".into(),
            created: "2026-11-25T00:00:00Z".into(),
            driver_state: berth_types::NetworkDriverState { bridge: format!("br-{id}") },
            internal: false,
            attachable: false,
            enable_ipv6: false,
            subnets: vec![SubnetRecord {
                subnet: "10.1.0.0/24".parse().unwrap(),
                ip_range: None,
                gateway: "10.1.0.1".parse().unwrap(),
            }],
            options: BTreeMap::new(),
            labels: BTreeMap::new(),
        }
    }

    fn sandbox(id: &str) -> SandboxRecord {
        SandboxRecord {
            id: id.into(),
            name: format!("sb-{id}"),
            hostname: id.into(),
            created: "2026-11-25T00:00:00Z".into(),
            mode: SandboxMode::None,
            netns_path: format!("/run/berth/netns/{id}"),
            config_dir: format!("/run/berth/sandboxes/{id}"),
            endpoints: vec![],
            processes: vec![],
            main_pid: None,
            ports: vec![],
            resolver: None,
            dns_servers: vec![],
            dns_search: vec![],
            dns_options: vec![],
            extra_hosts: vec![],
            auto_remove: false,
        }
    }

    fn temp_db(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("berth-store-test-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("state.redb")
    }

    #[test]
    fn commits_survive_reopening() {
        let path = temp_db("reopen");
        {
            let store = Store::open(&path).unwrap();
            store.commit(&[Change::PutNetwork(&network("a")), Change::PutSandbox(&sandbox("s"))]).unwrap();
            store.commit(&[Change::PutNetwork(&network("b")), Change::DeleteNetwork("a")]).unwrap();
        }
        let snapshot = Store::open(&path).unwrap().load().unwrap();
        assert_eq!(snapshot.networks, vec![network("b")]);
        assert_eq!(snapshot.sandboxes, vec![sandbox("s")]);
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
