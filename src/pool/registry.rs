//! All pools, keyed by (database, user), created on first use.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use parking_lot::Mutex;

use super::Pool;
use super::limits::{Counter, Counters, Limits};
use crate::config::{PoolOverrides, PoolSettings};
use crate::upstream::Upstream;

/// A configured database: its upstream and pool settings.
#[derive(Debug)]
pub struct Database {
    /// Name clients use.
    pub name: String,
    /// Where and how to connect.
    pub upstream: Arc<Upstream>,
    /// Pool settings (`[pool]` with the database's own keys; a user's keys go on top).
    pub settings: PoolSettings,
    /// Digest of everything that decides how servers are reached and logged in to: a reload
    /// keeps the upstream (and its credential) when this is unchanged.
    pub fingerprint: [u8; 32],
}

/// The set of databases and their pools.
#[derive(Debug)]
pub struct Registry {
    databases: HashMap<String, Arc<Database>>,
    /// Pool keys set on `[[users]]` entries, by user name.
    user_settings: HashMap<String, PoolOverrides>,
    pools: Mutex<HashMap<(String, String), Pool>>,
    ids: Arc<AtomicU64>,
    limits: Arc<Limits>,
    db_counters: HashMap<String, Arc<Counter>>,
    user_counters: Mutex<HashMap<String, Arc<Counter>>>,
}

impl Registry {
    /// A registry for the given databases; `user_settings` holds users' own pool keys.
    pub fn new(databases: Vec<Database>, user_settings: HashMap<String, PoolOverrides>) -> Self {
        Self {
            db_counters: databases
                .iter()
                .map(|d| (d.name.clone(), Arc::new(Counter::default())))
                .collect(),
            databases: databases
                .into_iter()
                .map(|d| (d.name.clone(), Arc::new(d)))
                .collect(),
            user_settings,
            pools: Mutex::new(HashMap::new()),
            ids: Arc::new(AtomicU64::new(1)),
            limits: Arc::new(Limits::default()),
            user_counters: Mutex::new(HashMap::new()),
        }
    }

    /// A registry for a reloaded configuration that keeps what did not change: the counts
    /// behind database and user limits, and each pool whose upstream and settings are the
    /// same (it moves over with its connections). The other pools of `old` are retired: their
    /// clients move to a new pool at their next checkout and their servers drain.
    pub fn reloaded(
        old: &Registry,
        databases: Vec<Database>,
        user_settings: HashMap<String, PoolOverrides>,
    ) -> Self {
        let mut new = Self::new(databases, user_settings);
        for (name, counter) in new.db_counters.iter_mut() {
            if let Some(o) = old.db_counters.get(name) {
                *counter = Arc::clone(o);
            }
        }
        new.user_counters = Mutex::new(old.user_counters.lock().clone());
        new.limits = Arc::clone(&old.limits);
        new.ids = Arc::clone(&old.ids);
        let mut kept = HashMap::new();
        for ((db, user), pool) in old.pools.lock().iter() {
            let same = new.databases.get(db).is_some_and(|d| {
                Arc::ptr_eq(&d.upstream, pool.upstream())
                    && new.settings(d, user) == *pool.settings()
            });
            if same {
                kept.insert((db.clone(), user.clone()), pool.clone());
            } else {
                pool.retire();
            }
        }
        *new.pools.get_mut() = kept;
        new
    }

    /// The pool a client of (`database`, `user`) should use now, if the database still exists.
    pub fn current_pool(&self, database: &str, user: &str) -> Option<Pool> {
        let db = Arc::clone(self.databases.get(database)?);
        Some(self.pool(&db, user))
    }

    /// The database named `name`, if configured.
    pub fn database(&self, name: &str) -> Option<&Arc<Database>> {
        self.databases.get(name)
    }

    /// Every configured database.
    pub fn databases(&self) -> impl Iterator<Item = &Arc<Database>> {
        self.databases.values()
    }

    /// The settings of the (database, user) pool: user keys over database keys over `[pool]`.
    pub fn settings(&self, db: &Database, user: &str) -> PoolSettings {
        match self.user_settings.get(user) {
            Some(o) => o.apply(&db.settings),
            None => db.settings.clone(),
        }
    }

    /// The pool for (database, user), created if needed. Called once per client login.
    pub fn pool(&self, db: &Database, user: &str) -> Pool {
        let mut pools = self.pools.lock();
        pools
            .entry((db.name.clone(), user.to_owned()))
            .or_insert_with(|| {
                let db_counter = self.db_counters.get(&db.name).cloned().unwrap_or_default();
                let user_counter = Arc::clone(
                    self.user_counters
                        .lock()
                        .entry(user.to_owned())
                        .or_default(),
                );
                Pool::new(
                    db.name.clone(),
                    user.to_owned(),
                    self.settings(db, user),
                    Arc::clone(&db.upstream),
                    Arc::clone(&self.ids),
                    Counters::new(Arc::clone(&self.limits), db_counter, user_counter),
                )
            })
            .clone()
    }

    /// Every pool that exists now.
    pub fn pools(&self) -> Vec<Pool> {
        self.pools.lock().values().cloned().collect()
    }

    /// Server connections counted now for a database (over all its pools).
    pub fn database_servers(&self, name: &str) -> usize {
        self.db_counters.get(name).map_or(0, |c| c.servers())
    }
}
