//! All pools, keyed by (database, user), created on first use.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use parking_lot::Mutex;

use super::Pool;
use crate::config::PoolSettings;
use crate::upstream::Upstream;

/// A configured database: its upstream and pool settings.
#[derive(Debug)]
pub struct Database {
    /// Name clients use.
    pub name: String,
    /// Where and how to connect.
    pub upstream: Arc<Upstream>,
    /// Pool settings.
    pub settings: PoolSettings,
}

/// The set of databases and their pools.
#[derive(Debug)]
pub struct Registry {
    databases: HashMap<String, Arc<Database>>,
    pools: Mutex<HashMap<(String, String), Pool>>,
    ids: Arc<AtomicU64>,
}

impl Registry {
    /// A registry for the given databases.
    pub fn new(databases: Vec<Database>) -> Self {
        Self {
            databases: databases
                .into_iter()
                .map(|d| (d.name.clone(), Arc::new(d)))
                .collect(),
            pools: Mutex::new(HashMap::new()),
            ids: Arc::new(AtomicU64::new(1)),
        }
    }

    /// The database named `name`, if configured.
    pub fn database(&self, name: &str) -> Option<&Arc<Database>> {
        self.databases.get(name)
    }

    /// Every configured database.
    pub fn databases(&self) -> impl Iterator<Item = &Arc<Database>> {
        self.databases.values()
    }

    /// The pool for (database, user), created if needed. Called once per client login.
    pub fn pool(&self, db: &Database, user: &str) -> Pool {
        let mut pools = self.pools.lock();
        pools
            .entry((db.name.clone(), user.to_owned()))
            .or_insert_with(|| {
                Pool::new(
                    db.name.clone(),
                    user.to_owned(),
                    db.settings.clone(),
                    Arc::clone(&db.upstream),
                    Arc::clone(&self.ids),
                )
            })
            .clone()
    }

    /// Every pool that exists now.
    pub fn pools(&self) -> Vec<Pool> {
        self.pools.lock().values().cloned().collect()
    }
}
