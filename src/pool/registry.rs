//! All pools, keyed by (database, user), created on first use.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use parking_lot::Mutex;

use super::limits::{Counter, Counters, Limits};
use super::{Connector, Pool};
use crate::config::{PoolOverrides, PoolSettings};
use crate::credentials::passthrough::TokenHash;
use crate::upstream::Upstream;
use crate::upstream::passthrough::Passthrough;

/// A configured database: its upstream and pool settings.
#[derive(Debug)]
pub(crate) struct Database {
    /// Name clients use.
    pub(crate) name: String,
    /// Where and how to connect.
    pub(crate) upstream: Arc<Upstream>,
    /// Pool settings (`[pool]` with the database's own keys; a user's keys go on top).
    pub(crate) settings: PoolSettings,
    /// Digest of everything that decides how servers are reached and logged in to: a reload
    /// keeps the upstream (and its credential) when this is unchanged.
    pub(crate) fingerprint: [u8; 32],
    /// Per-identity pass-through: each client's identity has its own upstream (its
    /// credential minted with the client's token), and `upstream` is a placeholder.
    pub(crate) passthrough: Option<Arc<Passthrough>>,
}

impl Database {
    /// The upstream a pool of `user` connects to: the database's own, or on a pass-through
    /// database the identity's (None while the identity has no checked token).
    pub(crate) fn upstream_for(&self, user: &str) -> Option<Arc<Upstream>> {
        match &self.passthrough {
            Some(p) => p.upstream(user),
            None => Some(Arc::clone(&self.upstream)),
        }
    }
}

/// The set of databases and their pools.
#[derive(Debug)]
pub(crate) struct Registry {
    databases: HashMap<String, Arc<Database>>,
    /// Pool keys set on `[[users]]` entries, by user name.
    user_settings: HashMap<String, PoolOverrides>,
    pools: Mutex<HashMap<(String, String), Pool>>,
    ids: Arc<AtomicU64>,
    limits: Arc<Limits>,
    db_counters: HashMap<String, Arc<Counter>>,
    user_counters: Mutex<HashMap<String, Arc<Counter>>>,
    /// PAUSEd databases (`None` in the set's place: all), so pools created later start paused.
    paused: Mutex<Paused>,
    /// How every pool of this registry opens server connections.
    connector: Connector,
}

/// What the admin console paused.
#[derive(Debug, Default, Clone)]
struct Paused {
    all: bool,
    databases: std::collections::HashSet<String>,
}

impl Registry {
    /// A registry for the given databases; `user_settings` holds users' own pool keys.
    pub(crate) fn new(
        databases: Vec<Database>,
        user_settings: HashMap<String, PoolOverrides>,
    ) -> Self {
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
            paused: Mutex::new(Paused::default()),
            connector: Connector::Upstream,
        }
    }

    /// This registry with pools that open server connections through `connector`.
    #[cfg(test)]
    pub(crate) fn with_connector(mut self, connector: Connector) -> Self {
        self.connector = connector;
        self
    }

    /// A registry for a reloaded configuration that keeps what did not change: the counts
    /// behind database and user limits, and each pool whose upstream and settings are the
    /// same (it moves over with its connections). The other pools of `old` are retired: their
    /// clients move to a new pool at their next checkout and their servers drain.
    pub(crate) fn reloaded(
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
        new.connector = old.connector.clone();
        let mut kept = HashMap::new();
        for ((db, user), pool) in old.pools.lock().iter() {
            let same = new.databases.get(db).is_some_and(|d| {
                d.upstream_for(user)
                    .is_some_and(|u| Arc::ptr_eq(&u, pool.upstream()))
                    && new.settings(d, user) == *pool.settings()
            });
            if same {
                kept.insert((db.clone(), user.clone()), pool.clone());
            } else {
                pool.retire();
                // Its clients waiting for RESUME go on (to this pool once, then the new one,
                // which starts paused if its database still is).
                pool.resume();
            }
        }
        *new.pools.get_mut() = kept;
        // PAUSE outlives a reload.
        *new.paused.get_mut() = old.paused.lock().clone();
        new
    }

    /// The pool a client of (`database`, `user`) should use now, if the database still exists.
    pub(crate) fn current_pool(&self, database: &str, user: &str) -> Option<Pool> {
        let db = Arc::clone(self.databases.get(database)?);
        // A pass-through identity that was dropped has no pool until it logs in again.
        db.upstream_for(user)?;
        Some(self.pool(&db, user))
    }

    /// The database named `name`, if configured.
    pub(crate) fn database(&self, name: &str) -> Option<&Arc<Database>> {
        self.databases.get(name)
    }

    /// Every configured database.
    pub(crate) fn databases(&self) -> impl Iterator<Item = &Arc<Database>> {
        self.databases.values()
    }

    /// The pool keys set on user `user`'s `[[users]]` entry, if any.
    pub(crate) fn user_overrides(&self, user: &str) -> Option<&PoolOverrides> {
        self.user_settings.get(user)
    }

    /// The settings of the (database, user) pool: user keys over database keys over `[pool]`.
    pub(crate) fn settings(&self, db: &Database, user: &str) -> PoolSettings {
        if db.passthrough.is_some() {
            // Identities are not `[[users]]`: a user entry of the same name does not apply.
            return db.settings.clone();
        }
        match self.user_settings.get(user) {
            Some(o) => o.apply(&db.settings),
            None => db.settings.clone(),
        }
    }

    /// The pool for (database, user), created if needed. Called once per client login. A
    /// pass-through identity that logged in again after it was dropped gets a new pool (the
    /// old one, on the old upstream, is retired).
    pub(crate) fn pool(&self, db: &Database, user: &str) -> Pool {
        let upstream = db
            .upstream_for(user)
            .unwrap_or_else(|| Arc::clone(&db.upstream));
        let mut pools = self.pools.lock();
        let key = (db.name.clone(), user.to_owned());
        let replaced = pools
            .get(&key)
            .is_some_and(|p| !Arc::ptr_eq(p.upstream(), &upstream));
        let stale = if replaced { pools.remove(&key) } else { None };
        let pool = pools
            .entry(key)
            .or_insert_with(|| {
                let paused = {
                    let p = self.paused.lock();
                    p.all || p.databases.contains(&db.name)
                };
                let db_counter = self.db_counters.get(&db.name).cloned().unwrap_or_default();
                let user_counter = Arc::clone(
                    self.user_counters
                        .lock()
                        .entry(user.to_owned())
                        .or_default(),
                );
                let pool = Pool::with_connector(
                    db.name.clone(),
                    user.to_owned(),
                    self.settings(db, user),
                    upstream,
                    Arc::clone(&self.ids),
                    Counters::new(Arc::clone(&self.limits), db_counter, user_counter),
                    self.connector.clone(),
                );
                if paused {
                    pool.pause();
                }
                pool
            })
            .clone();
        drop(pools);
        if let Some(old) = stale {
            old.retire();
        }
        pool
    }

    /// Drops the pass-through identities of every database whose token was refused or that
    /// have had no client for the token check's period, and retires their pools. Called by
    /// the maintenance task.
    pub fn sweep_passthrough(&self) {
        let now = tokio::time::Instant::now();
        for db in self.databases.values() {
            let Some(p) = &db.passthrough else { continue };
            for (name, upstream) in p.sweep(now) {
                self.retire_identity(&db.name, &name, &upstream);
            }
        }
    }

    /// A login as `user` on pass-through database `db` was refused with the token whose
    /// fingerprint is `hash`: when the identity's credential is refreshed with that token,
    /// the identity is dropped and its pool retired now.
    pub fn token_refused(&self, db: &Database, user: &str, hash: TokenHash) {
        if let Some(upstream) = db.passthrough.as_ref().and_then(|p| p.refused(user, hash)) {
            self.retire_identity(&db.name, user, &upstream);
        }
    }

    /// Retires the pool of identity `user` on `database` if it is the one on `upstream`:
    /// idle servers close now, busy ones when released.
    fn retire_identity(&self, database: &str, user: &str, upstream: &Arc<Upstream>) {
        let key = (database.to_owned(), user.to_owned());
        let mut pools = self.pools.lock();
        let same = pools
            .get(&key)
            .is_some_and(|p| Arc::ptr_eq(p.upstream(), upstream));
        let pool = if same { pools.remove(&key) } else { None };
        drop(pools);
        if let Some(p) = pool {
            p.retire();
        }
    }

    /// The pools of database `db` (every pool when None) that exist now.
    pub(crate) fn pools_of(&self, db: Option<&str>) -> Vec<Pool> {
        self.pools
            .lock()
            .values()
            .filter(|p| db.is_none_or(|d| p.database() == d))
            .cloned()
            .collect()
    }

    /// PAUSE: pauses the pools of `db` (all when None), including pools created later;
    /// returns the pools paused now.
    pub(crate) fn pause(&self, db: Option<&str>) -> Vec<Pool> {
        let pools = self.pools.lock();
        {
            let mut p = self.paused.lock();
            match db {
                Some(d) => {
                    p.databases.insert(d.to_owned());
                }
                None => p.all = true,
            }
        }
        let out: Vec<Pool> = pools
            .values()
            .filter(|p| db.is_none_or(|d| p.database() == d))
            .cloned()
            .collect();
        drop(pools);
        for p in &out {
            p.pause();
        }
        out
    }

    /// RESUME: undoes [`Registry::pause`] for `db` (everything when None). A database paused
    /// on its own stays paused after a RESUME of another one; a RESUME without a name resumes
    /// all.
    pub(crate) fn resume(&self, db: Option<&str>) {
        let pools = self.pools.lock();
        let still = {
            let mut p = self.paused.lock();
            match db {
                Some(d) => {
                    p.databases.remove(d);
                }
                None => *p = Paused::default(),
            }
            // Databases that stay paused.
            if p.all {
                None
            } else {
                Some(p.databases.clone())
            }
        };
        let resume: Vec<Pool> = pools
            .values()
            .filter(|p| db.is_none_or(|d| p.database() == d))
            .filter(|p| still.as_ref().is_some_and(|s| !s.contains(p.database())))
            .cloned()
            .collect();
        drop(pools);
        for p in resume {
            p.resume();
        }
    }

    /// Whether pools of database `db` start paused now (PAUSE of it, or of everything).
    pub(crate) fn database_paused(&self, db: &str) -> bool {
        let p = self.paused.lock();
        p.all || p.databases.contains(db)
    }

    /// Every pool that exists now.
    pub(crate) fn pools(&self) -> Vec<Pool> {
        self.pools.lock().values().cloned().collect()
    }

    /// Server connections counted now for a database (over all its pools).
    pub(crate) fn database_servers(&self, name: &str) -> usize {
        self.db_counters.get(name).map_or(0, |c| c.servers())
    }
}
