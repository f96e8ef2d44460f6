//! The shared metadata engine: PostgreSQL, for many eden-cas nodes over
//! one object store (`meta-store = postgres://…`).
//!
//! Each table of [`ALL_CFS`] is a table `(k bytea PRIMARY KEY, v bytea)`
//! named after it (`chunks-v1` → `chunks_v1`) in the connection's schema
//! (`search_path`; pick one with `?options=-csearch_path%3Dname`). Keys
//! and values are the same bytes RocksDB holds, so the typed layer above is
//! shared and the engines give the same answers; `bytea` compares bytewise,
//! which is the order scans need.
//!
//! A [`Kv::write`] is one transaction (`synchronous_commit = off` for the
//! writes RocksDB makes without a WAL sync). Puts become one
//! `INSERT … SELECT unnest … ON CONFLICT DO UPDATE` per run of puts to a
//! table, so a commit of a thousand rows is a handful of statements.
//! Queries go out with `query_typed` (parse, bind and execute in one round
//! trip, no named statements).
//!
//! The schema is versioned by refinery migrations in `migrations/postgres`
//! (history table `eden_cas_schema_history`); [`Postgres::open`] refuses a
//! schema that is behind (run `eden-cas migrate`) or ahead (a newer
//! eden-cas wrote it) of this binary.

use std::time::Duration;

use postgres::types::Type;
use r2d2_postgres::PostgresConnectionManager;
use tokio_postgres_rustls::MakeRustlsConnect;

use std::sync::mpsc;

use super::kv::{Cf, Kv, KvIter, Op, ScanSpec, prefix_end};
use super::lock::{LockKind, Remote, Request};
use super::{ALL_CFS, MetaError};

mod settings;

pub use settings::PgSettings;
use settings::tls;

mod embedded {
    refinery::embed_migrations!("migrations/postgres");
}

/// refinery's history table in the store's schema.
const HISTORY_TABLE: &str = "eden_cas_schema_history";

/// Connections in the pool of one node.
const POOL_SIZE: u32 = 16;

/// How long a caller waits for a pooled connection (or a new one).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Rows a scan fetches first; each later page is four times larger, up to
/// [`MAX_PAGE`] (short scans stay cheap, long ones take few round trips).
const FIRST_PAGE: i64 = 16;
const MAX_PAGE: i64 = 1024;

/// Where a schema stands against this binary's migrations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchemaVersion {
    /// The newest migration applied to the database (0: none).
    pub applied: u32,
    /// The newest migration this binary carries.
    pub supported: u32,
}

type Pool = r2d2::Pool<PostgresConnectionManager<MakeRustlsConnect>>;

/// Rows of a scan page, `(key, value)`.
type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// A scan bound: the key, and whether it is included.
type Bound<'a> = Option<(&'a [u8], bool)>;

/// A PostgreSQL metadata store: a pool of connections to one schema.
pub struct Postgres {
    /// Always `Some` until dropped (see the `Drop` impl).
    pool: Option<Pool>,
    display: String,
    schema: String,
    settings: PgSettings,
}

/// The error with its causes (the server's own message is the cause of
/// the driver's "db error").
fn pg_err(e: impl std::error::Error) -> MetaError {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cause = c.source();
    }
    MetaError::Postgres(msg)
}

/// The table of a column family.
fn table(cf: Cf) -> String {
    cf.replace('-', "_")
}

impl Postgres {
    /// Connects, checks the schema version against this binary's
    /// migrations and that every table is there and writable.
    ///
    /// # Errors
    /// [`MetaError::Postgres`] naming what to fix: the server unreachable
    /// or refusing the login, a schema behind this binary (run `eden-cas
    /// migrate`) or ahead of it (a newer eden-cas migrated it), a missing
    /// privilege.
    pub fn open(settings: &PgSettings) -> Result<Self, MetaError> {
        let pg = Self::connect(settings)?;
        let v = pg.schema_version()?;
        if v.applied < v.supported {
            return Err(MetaError::Postgres(format!(
                "the metadata schema {} at {} is at version {} and this eden-cas needs {}: \
                 run `eden-cas migrate` (or start with --migrate)",
                pg.schema, pg.display, v.applied, v.supported
            )));
        }
        if v.applied > v.supported {
            return Err(MetaError::Postgres(format!(
                "the metadata schema {} at {} is at version {}, newer than this eden-cas's {}: \
                 run a newer eden-cas",
                pg.schema, pg.display, v.applied, v.supported
            )));
        }
        pg.check_privileges()?;
        Ok(pg)
    }

    /// Connects without checking the schema (for `migrate`).
    ///
    /// # Errors
    /// [`MetaError::Postgres`] when the server cannot be reached or refuses
    /// the login.
    pub fn connect(settings: &PgSettings) -> Result<Self, MetaError> {
        let manager = PostgresConnectionManager::new(settings.config.clone(), tls(settings)?);
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(CONNECT_TIMEOUT)
            .test_on_check_out(false)
            .build(manager)
            .map_err(|e| {
                MetaError::Postgres(format!("cannot connect to {}: {e}", settings.display))
            })?;
        let mut pg = Postgres {
            pool: Some(pool),
            display: settings.display.clone(),
            schema: String::new(),
            settings: settings.clone(),
        };
        let schema: Option<String> = pg.with_conn(|c| {
            Ok(c.query_one("SELECT current_schema()", &[])
                .map_err(pg_err)?
                .get(0))
        })?;
        pg.schema = schema.ok_or_else(|| {
            MetaError::Postgres(format!(
                "{}: no schema: the search_path names no existing schema (create it, or \
                 pick one with ?options=-csearch_path%3Dname)",
                settings.display
            ))
        })?;
        Ok(pg)
    }

    /// The connection settings this store was opened with.
    pub fn settings(&self) -> &PgSettings {
        &self.settings
    }

    /// The schema the tables live in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Runs `f` on a pooled connection. The sync client drives its
    /// connection with a runtime of its own, which must not be started on a
    /// thread that is inside a tokio runtime (the engine's async tasks and
    /// its blocking pool): there `f` runs on a scoped thread of its own.
    fn with_conn<T: Send>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, MetaError> + Send,
    ) -> Result<T, MetaError> {
        let run = || {
            let pool = self.pool.as_ref().ok_or_else(|| {
                MetaError::Postgres(format!("{}: the pool is closed", self.display))
            })?;
            let mut conn = pool.get().map_err(|e| {
                MetaError::Postgres(format!("no connection to {}: {e}", self.display))
            })?;
            f(&mut conn)
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return run();
        }
        std::thread::scope(|s| {
            s.spawn(run)
                .join()
                .unwrap_or_else(|_| Err(MetaError::Postgres("a database call panicked".into())))
        })
    }

    /// The applied and supported schema versions.
    ///
    /// # Errors
    /// [`MetaError::Postgres`] when the history cannot be read.
    pub fn schema_version(&self) -> Result<SchemaVersion, MetaError> {
        let mut runner = embedded::migrations::runner();
        runner.set_migration_table_name(HISTORY_TABLE);
        let supported = runner
            .get_migrations()
            .iter()
            .map(|m| m.version())
            .max()
            .unwrap_or(0);
        let applied = self.with_conn(|conn| {
            // refinery creates its history table on the first run only.
            let has_history: bool = conn
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&HISTORY_TABLE])
                .map_err(pg_err)?
                .get(0);
            if !has_history {
                return Ok(0);
            }
            Ok(runner
                .get_last_applied_migration(conn)
                .map_err(pg_err)?
                .map_or(0, |m| m.version()))
        })?;
        Ok(SchemaVersion { applied, supported })
    }

    /// Applies the migrations the schema lacks (never one older than what
    /// is applied; a schema ahead of this binary is refused untouched).
    ///
    /// # Errors
    /// [`MetaError::Postgres`] for a schema ahead of this binary or a
    /// failed migration (each runs in its own transaction).
    pub fn migrate(&self) -> Result<SchemaVersion, MetaError> {
        let before = self.schema_version()?;
        if before.applied > before.supported {
            return Err(MetaError::Postgres(format!(
                "the metadata schema {} is at version {}, newer than this eden-cas's {}: \
                 refusing to touch it",
                self.schema, before.applied, before.supported
            )));
        }
        let mut runner = embedded::migrations::runner();
        runner.set_migration_table_name(HISTORY_TABLE);
        let runner = runner.set_abort_divergent(true).set_abort_missing(true);
        self.with_conn(|conn| runner.run(conn).map(drop).map_err(pg_err))?;
        self.schema_version()
    }

    /// Reads and writes nothing, but asks the server whether this login may
    /// read and write every table.
    fn check_privileges(&self) -> Result<(), MetaError> {
        for cf in ALL_CFS {
            let t = table(cf);
            let ok: Option<bool> = self.with_conn(|conn| {
                Ok(conn
                    // One privilege per call: with a list, the function
                    // answers whether ANY of them is held.
                    .query_one(
                        "SELECT bool_and(has_table_privilege(to_regclass($1), p)) \
                         FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) AS p",
                        &[&t],
                    )
                    .map_err(pg_err)?
                    .get(0))
            })?;
            if ok != Some(true) {
                return Err(MetaError::Postgres(format!(
                    "this login may not read and write table {}.{t} at {}: grant SELECT, \
                     INSERT, UPDATE, DELETE on it",
                    self.schema, self.display
                )));
            }
        }
        Ok(())
    }

    /// Runs one page of a scan.
    fn page(
        &self,
        cf: Cf,
        lower: Bound<'_>,
        upper: Bound<'_>,
        reverse: bool,
        limit: i64,
    ) -> Result<Rows, MetaError> {
        let mut sql = format!("SELECT k, v FROM {} WHERE true", table(cf));
        let mut params: Vec<(&(dyn postgres::types::ToSql + Sync), Type)> = Vec::new();
        if let Some((k, inclusive)) = &lower {
            params.push((k, Type::BYTEA));
            let op = if *inclusive { ">=" } else { ">" };
            sql.push_str(&format!(" AND k {op} ${}", params.len()));
        }
        if let Some((k, inclusive)) = &upper {
            params.push((k, Type::BYTEA));
            let op = if *inclusive { "<=" } else { "<" };
            sql.push_str(&format!(" AND k {op} ${}", params.len()));
        }
        params.push((&limit, Type::INT8));
        let order = if reverse { "DESC" } else { "ASC" };
        sql.push_str(&format!(" ORDER BY k {order} LIMIT ${}", params.len()));
        self.with_conn(|conn| {
            let rows = conn.query_typed(&sql, &params).map_err(pg_err)?;
            Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    /// Applies `ops` in one transaction.
    fn apply(tx: &mut postgres::Transaction<'_>, ops: Vec<Op>) -> Result<(), postgres::Error> {
        let mut ops = ops.into_iter().peekable();
        while let Some(op) = ops.next() {
            match op {
                Op::Put(cf, k, v) => {
                    // A run of puts to one table: one statement, the last
                    // value of a key winning as in RocksDB.
                    let mut run = std::collections::BTreeMap::new();
                    run.insert(k, v);
                    while let Some(Op::Put(next, _, _)) = ops.peek() {
                        if *next != cf {
                            break;
                        }
                        if let Some(Op::Put(_, k, v)) = ops.next() {
                            run.insert(k, v);
                        }
                    }
                    let (keys, values): (Vec<Vec<u8>>, Vec<Vec<u8>>) = run.into_iter().unzip();
                    let sql = format!(
                        "INSERT INTO {} (k, v) SELECT * FROM unnest($1::bytea[], $2::bytea[]) \
                         ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                        table(cf)
                    );
                    tx.query_typed(
                        &sql,
                        &[(&keys, Type::BYTEA_ARRAY), (&values, Type::BYTEA_ARRAY)],
                    )?;
                }
                Op::Delete(cf, k) => {
                    let mut keys = vec![k];
                    while let Some(Op::Delete(next, _)) = ops.peek() {
                        if *next != cf {
                            break;
                        }
                        if let Some(Op::Delete(_, k)) = ops.next() {
                            keys.push(k);
                        }
                    }
                    let sql = format!("DELETE FROM {} WHERE k = ANY($1)", table(cf));
                    tx.query_typed(&sql, &[(&keys, Type::BYTEA_ARRAY)])?;
                }
                Op::DeleteRange(cf, from, to) => {
                    let sql = format!("DELETE FROM {} WHERE k >= $1 AND k < $2", table(cf));
                    tx.query_typed(&sql, &[(&from, Type::BYTEA), (&to, Type::BYTEA)])?;
                }
            }
        }
        Ok(())
    }
}

impl Drop for Postgres {
    /// Closing a connection blocks on the client's own runtime, which
    /// cannot happen on a thread inside a tokio runtime: the pool is closed
    /// on a thread of its own there.
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            std::thread::spawn(move || drop(pool));
        }
    }
}

/// The advisory lock key of `kind` in `schema`: the first 8 bytes of a
/// BLAKE3 of both, so stores in different schemas of one database never
/// contend.
fn advisory_key(schema: &str, kind: LockKind) -> i64 {
    let h = blake3::hash(format!("eden-cas lock {schema} {}", kind.name()).as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    i64::from_le_bytes(b)
}

/// One kind's lock thread: a connection of its own (made on first use and
/// after a failure) that takes and releases the advisory lock in the order
/// requests arrive. Ends when the store is dropped.
fn lock_thread(settings: PgSettings, key: i64, requests: mpsc::Receiver<Request>) {
    let mut client: Option<postgres::Client> = None;
    for request in requests {
        match request {
            Request::Lock(reply) => {
                let mut take = || -> Result<(), MetaError> {
                    let c = match client.take() {
                        Some(c) if !c.is_closed() => client.insert(c),
                        _ => {
                            client.insert(settings.config.connect(tls(&settings)?).map_err(pg_err)?)
                        }
                    };
                    c.execute("SELECT pg_advisory_lock($1)", &[&key])
                        .map(drop)
                        .map_err(pg_err)
                };
                let result = take();
                if result.is_err() {
                    client = None;
                }
                let _ = reply.send(result);
            }
            Request::Unlock => {
                let released = client
                    .as_mut()
                    .map(|c| c.execute("SELECT pg_advisory_unlock($1)", &[&key]));
                if let Some(Err(_)) = released {
                    // The session is gone, and its locks with it.
                    client = None;
                }
            }
        }
    }
}

impl Kv for Postgres {
    fn lock_threads(&self) -> Option<Remote> {
        Some(LockKind::ALL.map(|kind| {
            let (tx, rx) = mpsc::channel();
            let (settings, key) = (self.settings.clone(), advisory_key(&self.schema, kind));
            // A thread that does not start drops `rx`: every lock of that
            // kind then fails, naming it.
            let _ = std::thread::Builder::new()
                .name(format!("eden-cas-lock-{}", kind.name()))
                .spawn(move || lock_thread(settings, key, rx));
            tx
        }))
    }

    fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, MetaError> {
        let sql = format!("SELECT v FROM {} WHERE k = $1", table(cf));
        self.with_conn(|conn| {
            let row = conn
                .query_typed_opt(&sql, &[(&key, Type::BYTEA)])
                .map_err(pg_err)?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn multi_get(&self, cf: Cf, keys: &[&[u8]]) -> Result<Vec<Option<Vec<u8>>>, MetaError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!("SELECT k, v FROM {} WHERE k = ANY($1)", table(cf));
        let rows = self.with_conn(|conn| {
            conn.query_typed(&sql, &[(&keys, Type::BYTEA_ARRAY)])
                .map_err(pg_err)
        })?;
        let found: std::collections::HashMap<Vec<u8>, Vec<u8>> =
            rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(keys.iter().map(|k| found.get(*k).cloned()).collect())
    }

    fn scan<'a>(&'a self, cf: Cf, spec: ScanSpec<'_>) -> KvIter<'a> {
        Box::new(PgScan {
            pg: self,
            cf,
            prefix: spec.prefix.map(<[u8]>::to_vec),
            prefix_end: spec.prefix.and_then(prefix_end),
            from: spec.from.map(<[u8]>::to_vec),
            reverse: spec.reverse,
            last: None,
            page: Vec::new().into_iter(),
            next_limit: FIRST_PAGE,
            done: false,
        })
    }

    fn write(&self, ops: Vec<Op>, sync: bool) -> Result<(), MetaError> {
        self.with_conn(|conn| {
            let mut tx = conn.transaction().map_err(pg_err)?;
            if !sync {
                tx.batch_execute("SET LOCAL synchronous_commit = off")
                    .map_err(pg_err)?;
            }
            Self::apply(&mut tx, ops).map_err(pg_err)?;
            tx.commit().map_err(pg_err)
        })
    }

    fn estimate_keys(&self, cf: Cf) -> u64 {
        let t = table(cf);
        self.with_conn(|conn| {
            conn.query_one(
                "SELECT greatest(reltuples, 0)::int8 FROM pg_class WHERE oid = to_regclass($1)",
                &[&t],
            )
            .map_err(pg_err)
            .map(|r| r.get::<_, Option<i64>>(0))
        })
        .ok()
        .flatten()
        .map_or(0, |n| u64::try_from(n).unwrap_or(0))
    }

    fn flush(&self) -> Result<(), MetaError> {
        // Every write is a committed transaction: nothing to flush.
        Ok(())
    }

    fn describe(&self) -> String {
        format!("{} (schema {})", self.display, self.schema)
    }
}

/// A scan, one page (one snapshot) at a time, resuming after the last key
/// seen.
struct PgScan<'a> {
    pg: &'a Postgres,
    cf: Cf,
    prefix: Option<Vec<u8>>,
    prefix_end: Option<Vec<u8>>,
    from: Option<Vec<u8>>,
    reverse: bool,
    last: Option<Vec<u8>>,
    page: std::vec::IntoIter<(Vec<u8>, Vec<u8>)>,
    next_limit: i64,
    done: bool,
}

impl PgScan<'_> {
    fn fetch(&mut self) -> Result<(), MetaError> {
        // Bounds: the prefix range, `from`, and strictly past the last key.
        let (mut lower, mut upper): (Bound<'_>, Bound<'_>) = (
            self.prefix.as_deref().map(|p| (p, true)),
            self.prefix_end.as_deref().map(|e| (e, false)),
        );
        let resume = match (&self.last, &self.from) {
            (Some(l), _) => Some((l.as_slice(), false)),
            (None, Some(f)) => Some((f.as_slice(), true)),
            (None, None) => None,
        };
        if let Some(r) = resume {
            // Tighten the bound on the scan's side (both are lower bounds
            // forward, upper bounds in reverse; keep the tighter).
            let slot = if self.reverse { &mut upper } else { &mut lower };
            let tighter = match slot {
                None => true,
                Some((cur, _)) if self.reverse => r.0 <= *cur,
                Some((cur, _)) => r.0 >= *cur,
            };
            if tighter {
                *slot = Some(r);
            }
        }
        let rows = self
            .pg
            .page(self.cf, lower, upper, self.reverse, self.next_limit)?;
        if (rows.len() as i64) < self.next_limit {
            self.done = true;
        }
        self.next_limit = (self.next_limit * 4).min(MAX_PAGE);
        self.last = rows.last().map(|(k, _)| k.clone());
        self.page = rows.into_iter();
        Ok(())
    }
}

impl Iterator for PgScan<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>), MetaError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(row) = self.page.next() {
                return Some(Ok(row));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.fetch() {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}
