//! Database access: one pool (SQLite or PostgreSQL), migrations, and every SQL
//! string in the crate (`tests/api/layout.rs` fails on SQL anywhere else in
//! `src/`). Each submodule holds the statements of the tables its header names and
//! returns typed rows; features call these functions, and open the transaction
//! where several must commit together.

pub mod clock;
pub mod copies;
pub mod imports;
pub mod instances;
pub mod objects;
pub mod scrub;
pub mod settings;
pub mod tokens;
pub mod uploads;
pub mod users;

use std::path::Path;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};

/// Errors from the database, by what a caller can do about them.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database cannot be reached or the pool is exhausted; retrying may help.
    #[error("database unavailable")]
    Unavailable {
        #[source]
        source: sqlx::Error,
    },
    /// Applying migrations failed.
    #[error("database migration failed")]
    Migrate {
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// The database a command was told to open does not exist; only `serve` and
    /// `migrate` create one.
    #[error(
        "no database at {url}: only `museum serve` and `museum migrate` create one; check ENTE_DB_* / db.* settings, ENVIRONMENT and the working folder"
    )]
    Missing { url: String },
    /// The database exists but holds no museum schema, or an older one.
    #[error(
        "the database at {url} {state}: run `museum migrate` (or `museum serve`) against it first, or check ENTE_DB_* / db.* settings and ENVIRONMENT"
    )]
    NotMigrated { url: String, state: String },
    /// A column holds a value this build does not know: a newer museum wrote it,
    /// or the row was edited by hand.
    #[error(
        "{column} holds {value:?}, which this museum does not know: run the museum that wrote it, or correct the row"
    )]
    UnknownValue { column: &'static str, value: String },
    /// Any other database failure.
    #[error("database error")]
    Other {
        #[source]
        source: sqlx::Error,
    },
}

impl From<sqlx::Error> for DbError {
    fn from(source: sqlx::Error) -> Self {
        let busy = matches!(&source, sqlx::Error::Database(e)
            if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
                && is_busy_code(e.code().as_deref()));
        match source {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                Self::Unavailable { source }
            }
            // SQLite's "database is locked" / "table is locked": contention that passes.
            _ if busy => Self::Unavailable { source },
            other => Self::Other { source: other },
        }
    }
}

/// Whether a SQLite result code is "database is locked" (SQLITE_BUSY, 5) or "table
/// is locked" (SQLITE_LOCKED, 6), extended codes included: SQLITE_BUSY_SNAPSHOT is
/// 517, whose low byte is 5.
fn is_busy_code(code: Option<&str>) -> bool {
    code.and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| matches!(c & 0xff, 5 | 6))
}

impl DbError {
    /// The same category of error for another caller (errors are not `Clone`).
    pub fn duplicate(&self) -> Self {
        let describe = |e: &dyn std::error::Error| sqlx::Error::Protocol(e.to_string());
        match self {
            Self::Unavailable { source } => Self::Unavailable {
                source: describe(source),
            },
            Self::Migrate { source } => Self::Other {
                source: describe(source),
            },
            Self::Other { source } => Self::Other {
                source: describe(source),
            },
            Self::Missing { url } => Self::Missing { url: url.clone() },
            Self::NotMigrated { url, state } => Self::NotMigrated {
                url: url.clone(),
                state: state.clone(),
            },
            Self::UnknownValue { column, value } => Self::UnknownValue {
                column,
                value: value.clone(),
            },
        }
    }
}

/// Result alias for database functions.
pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// Which engine the pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A connection pool and the engine behind it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    engine: Engine,
}

/// Pool settings.
#[derive(Debug, Clone, Copy)]
pub struct PoolConfig {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// SQLite's page cache per connection, in MiB. A command that reads every row
    /// once wants a small one, or its memory grows with the database.
    pub cache_mib: u32,
}

impl PoolConfig {
    /// The page cache of the server and of commands that work like it. In WAL mode
    /// a connection drops its whole cache when another has written since its last
    /// read, which on a busy server is nearly every statement, and dropping costs
    /// time in proportion to the pages held: with 64 MiB, a growing database slowed
    /// upload-URL requests by a fifth and the claims of a 1,000,000-copy backlog by a
    /// tenth. 8 MiB still holds a statement's pages between two writes.
    pub const SERVER_CACHE_MIB: u32 = 8;
    /// The page cache of a command that reads every row once (`museum reconcile`).
    pub const SCAN_CACHE_MIB: u32 = 2;
}

/// Whether connecting may bring a new database into being.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// Create the SQLite file and its folder if missing (`serve`, `migrate`).
    Create,
    /// Open only a database that is already there.
    Existing,
}

impl Db {
    /// Creates the database if missing and applies every migration: for `serve` and
    /// `migrate`, the only commands that may bring a database into being.
    pub async fn create(url: &SecretString, pool: PoolConfig) -> Result<Self> {
        let db = Self::connect(url, pool, Open::Create).await?;
        db.migrate().await?;
        Ok(db)
    }

    /// Opens a database that exists and holds the whole schema of this build, or
    /// stops with an error that names the URL it tried. Every command but `serve` and
    /// `migrate` opens its database this way, so that a wrong `ENTE_DB_URL`, an unset
    /// `ENVIRONMENT` or the wrong working folder cannot make an empty database that a
    /// command then reads as "no objects recorded".
    pub async fn open(url: &SecretString, pool: PoolConfig) -> Result<Self> {
        let db = Self::connect(url, pool, Open::Existing).await?;
        let state = match db.applied_migrations().await {
            Ok(None) => Some("holds no museum schema".to_owned()),
            Ok(Some(applied)) => {
                let pending = db.migrator().iter().count().saturating_sub(applied);
                (pending > 0).then(|| format!("lacks {pending} of this build's migrations"))
            }
            Err(e) => {
                db.close().await;
                return Err(e);
            }
        };
        if let Some(state) = state {
            db.close().await;
            return Err(DbError::NotMigrated {
                url: redact_url(url.expose_secret()),
                state,
            });
        }
        Ok(db)
    }

    /// Connects to `url` (`sqlite://…` or `postgres://…`). With [`Open::Create`] a
    /// missing SQLite file and its folder are created; with [`Open::Existing`] a
    /// missing file is [`DbError::Missing`]. SQLite is put in WAL mode. Every
    /// connection runs `synchronous = FULL`: a commit is in the log on disk before it
    /// returns, so an acknowledged report survives a power cut or an OS crash.
    /// Applies no migration: see [`Db::create`] and [`Db::open`].
    pub async fn connect(url: &SecretString, pool: PoolConfig, open: Open) -> Result<Self> {
        install_default_drivers();
        let raw = url.expose_secret();
        let (engine, url) = if raw.starts_with("sqlite:") {
            (Engine::Sqlite, sqlite_url(raw, open)?)
        } else {
            (Engine::Postgres, raw.to_owned())
        };
        let max_connections = pool.max_connections;
        let cache_size = format!("PRAGMA cache_size = -{}", u64::from(pool.cache_mib) * 1024);
        let options = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(pool.acquire_timeout)
            // An in-process SQLite connection cannot drop: skip the ping per checkout.
            .test_before_acquire(engine == Engine::Postgres);
        let options = if engine == Engine::Sqlite {
            // WAL is a property of the database file: set it once, on a connection of
            // its own, because switching needs a lock that busy_timeout cannot wait for.
            let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&url).await?;
            conn.execute("PRAGMA journal_mode = WAL").await?;
            sqlx::Connection::close(conn).await?;
            options.after_connect(move |conn, _| {
                let cache_size = cache_size.clone();
                Box::pin(async move {
                    // NORMAL would sync only at checkpoints, so a crash could take
                    // back commits already acknowledged; group commit (the key
                    // writer, bulk reports) keeps the syncs few.
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute(sqlx::AssertSqlSafe(cache_size)).await?;
                    // No memory map: in WAL mode a connection unmaps the whole file
                    // whenever another one has written since its last read, so with
                    // many writers the mapping was torn down and faulted back in for
                    // nearly every statement (a 1 GiB map cost the replicator about
                    // 15% more CPU than reading pages with pread).
                    conn.execute("PRAGMA mmap_size = 0").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            })
        } else {
            options
        };
        let pool = options.connect(&url).await?;
        Ok(Self { pool, engine })
    }

    fn migrator(&self) -> sqlx::migrate::Migrator {
        match self.engine {
            Engine::Sqlite => sqlx::migrate!("src/db/migrations/sqlite"),
            Engine::Postgres => sqlx::migrate!("src/db/migrations/postgres"),
        }
    }

    /// How many embedded migrations the database has not applied yet.
    pub async fn pending_migrations(&self) -> Result<usize> {
        let known = self.migrator().iter().count();
        Ok(known.saturating_sub(self.applied_migrations().await?.unwrap_or(0)))
    }

    /// How many migrations the database records as applied; `None` when it has no
    /// bookkeeping table, that is, no museum schema at all.
    async fn applied_migrations(&self) -> Result<Option<usize>> {
        match sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await
        {
            Ok(n) => Ok(Some(usize::try_from(n).unwrap_or(0))),
            Err(sqlx::Error::Database(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Applies the embedded migrations for this engine; a no-op when up to date.
    /// Two processes may start at once on a new database (`serve` and `migrate`, or
    /// two instances): PostgreSQL's migrator takes an advisory lock, and on SQLite
    /// the whole run is one transaction that holds the write lock from its first
    /// statement, so the second waits and then finds nothing left to apply.
    pub async fn migrate(&self) -> Result<()> {
        let failed = |source| DbError::Migrate { source };
        match self.engine {
            Engine::Postgres => self.migrator().run(&self.pool).await.map_err(failed),
            Engine::Sqlite => {
                let mut tx = self.begin_write().await?;
                let conn: &mut sqlx::AnyConnection = &mut tx;
                // `run` over a borrowed connection is not `Send` (sqlx's `Acquire`
                // bound); `run_direct` takes the connection itself. Each migration's
                // own transaction nests as a savepoint.
                self.migrator()
                    .run_direct(None, conn, false)
                    .await
                    .map_err(failed)?;
                tx.commit().await?;
                Ok(())
            }
        }
    }

    /// Begins a transaction that writes. Every transaction that writes begins here.
    /// On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`), waiting for it
    /// up to the busy timeout: a deferred transaction that reads before it writes
    /// cannot become a writer once another connection has written, and SQLite fails
    /// it at once ("database is locked") instead of waiting its turn.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.engine {
            Engine::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Engine::Postgres => self.pool.begin().await?,
        })
    }

    /// One round trip to the database.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The engine behind the pool.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The underlying pool, for pool-level gauges.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// With [`Open::Create`], adds `mode=rwc` so that a missing file is created, and
/// creates its folder. With [`Open::Existing`], adds `mode=rw` and answers
/// [`DbError::Missing`] for a file that is not there.
fn sqlite_url(raw: &str, open: Open) -> Result<String> {
    let rest = raw
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = rest.split('?').next().unwrap_or(rest);
    let on_disk = !path.is_empty() && path != ":memory:";
    match open {
        Open::Create => {
            if on_disk
                && let Some(parent) = Path::new(path).parent()
                && !parent.as_os_str().is_empty()
            {
                // A failure here surfaces as a clear connect error just after.
                let _ = std::fs::create_dir_all(parent);
            }
        }
        Open::Existing => {
            if on_disk && !Path::new(path).is_file() {
                return Err(DbError::Missing {
                    url: redact_url(raw),
                });
            }
        }
    }
    let mode = match open {
        Open::Create => "mode=rwc",
        Open::Existing => "mode=rw",
    };
    Ok(if raw.contains("mode=") {
        raw.to_owned()
    } else if raw.contains('?') {
        format!("{raw}&{mode}")
    } else {
        format!("{raw}?{mode}")
    })
}

/// `url` with any password replaced by `***`, for errors and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            if userinfo.contains(':') {
                format!("{scheme}://{user}:***@{host}{tail}")
            } else {
                format!("{scheme}://{user}@{host}{tail}")
            }
        }
        None => url.to_owned(),
    }
}

/// Milliseconds since the Unix epoch by the database's clock (`clock`), the unit of
/// every timestamp column.
pub fn now_millis() -> i64 {
    clock::host_millis().saturating_add(clock::offset_ms())
}

/// `count` numbered placeholders from `$first` on, comma-separated (`$3, $4, $5`),
/// for statements whose number of values is known only at run time. Only these are
/// formatted into SQL; every value is bound.
/// `rows` rows of `columns` numbered placeholders each, from `$first` on, for a
/// `VALUES` list: `($3, $4), ($5, $6)`. Both engines name their columns column1….
pub(crate) fn values_rows(first: usize, rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", placeholders(first + r * columns, columns)))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_from_the_first_asked() {
        assert_eq!(placeholders(1, 3), "$1, $2, $3");
        assert_eq!(placeholders(19, 2), "$19, $20");
        assert_eq!(placeholders(1, 0), "");
    }

    #[test]
    fn values_rows_number_each_row_after_the_last() {
        assert_eq!(values_rows(3, 2, 2), "($3, $4), ($5, $6)");
        assert_eq!(values_rows(2, 1, 4), "($2, $3, $4, $5)");
        assert_eq!(values_rows(1, 0, 3), "");
    }

    #[test]
    fn locked_databases_are_recognised_by_primary_and_extended_codes() {
        // SQLITE_BUSY, _LOCKED, _BUSY_RECOVERY, _BUSY_SNAPSHOT, _BUSY_TIMEOUT,
        // _LOCKED_SHAREDCACHE.
        for code in ["5", "6", "261", "517", "773", "262"] {
            assert!(is_busy_code(Some(code)), "{code}");
        }
        // SQLITE_CONSTRAINT_UNIQUE, SQLITE_IOERR_READ, SQLITE_CANTOPEN.
        for code in ["2067", "266", "14"] {
            assert!(!is_busy_code(Some(code)), "{code}");
        }
        assert!(!is_busy_code(None));
    }

    #[tokio::test]
    async fn a_stale_sqlite_reader_that_writes_is_unavailable_not_an_internal_error() {
        // A deferred transaction reads, another connection commits a write, and the
        // first one's write then fails with SQLITE_BUSY_SNAPSHOT (517).
        install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_url(
            &format!("sqlite://{}", dir.path().join("t.db").display()),
            Open::Create,
        )
        .unwrap();
        let connect = || <sqlx::AnyConnection as sqlx::Connection>::connect(&url);
        let mut a = connect().await.unwrap();
        a.execute("PRAGMA journal_mode = WAL").await.unwrap();
        a.execute("CREATE TABLE t (n INTEGER)").await.unwrap();
        let mut b = connect().await.unwrap();
        a.execute("BEGIN").await.unwrap();
        a.execute("SELECT COUNT(*) FROM t").await.unwrap();
        b.execute("INSERT INTO t VALUES (1)").await.unwrap();
        let err = a.execute("INSERT INTO t VALUES (2)").await.unwrap_err();
        let code = match &err {
            sqlx::Error::Database(e) => e.code().map(|c| c.into_owned()),
            _ => None,
        };
        assert_eq!(code.as_deref(), Some("517"), "{err}");
        assert!(
            matches!(DbError::from(err), DbError::Unavailable { .. }),
            "a locked database is worth a retry"
        );
    }

    #[test]
    fn sqlite_urls_gain_create_mode() {
        let url = |raw| sqlite_url(raw, Open::Create).unwrap();
        assert_eq!(url("sqlite::memory:"), "sqlite::memory:?mode=rwc");
        assert_eq!(
            url("sqlite://x.db?cache=shared"),
            "sqlite://x.db?cache=shared&mode=rwc"
        );
        assert_eq!(url("sqlite://x.db?mode=ro"), "sqlite://x.db?mode=ro");
    }

    #[test]
    fn an_existing_sqlite_database_must_be_there() {
        let dir = tempfile::tempdir().unwrap();
        let missing = format!("sqlite://{}/elsewhere/museum.db", dir.path().display());
        let err = sqlite_url(&missing, Open::Existing).unwrap_err();
        assert!(matches!(err, DbError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("elsewhere/museum.db"), "{err}");
        assert!(!dir.path().join("elsewhere").exists(), "no folder is made");
        let there = dir.path().join("museum.db");
        std::fs::write(&there, b"").unwrap();
        let url = format!("sqlite://{}", there.display());
        assert_eq!(
            sqlite_url(&url, Open::Existing).unwrap(),
            format!("{url}?mode=rw")
        );
    }

    #[test]
    fn passwords_are_redacted_from_database_urls() {
        assert_eq!(
            redact_url("postgres://museum:s3cret@db.example:5432/ente?sslmode=require"),
            "postgres://museum:***@db.example:5432/ente?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://museum@db/ente"),
            "postgres://museum@db/ente"
        );
        assert_eq!(
            redact_url("sqlite://data/museum.db"),
            "sqlite://data/museum.db"
        );
    }
}
