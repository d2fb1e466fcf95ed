//! Database access: one pool (SQLite or PostgreSQL), migrations, and every SQL
//! string in the crate, one submodule per table.

pub mod imports;
pub mod instances;
pub mod replication;
pub mod scrub;
pub mod tokens;
pub mod uploads;
pub mod users;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

impl Db {
    /// Connects to `url` (`sqlite://…` or `postgres://…`). For SQLite the file and its
    /// folder are created if missing, and the database is put in WAL mode. Every
    /// connection runs `synchronous = FULL`: a commit is in the log on disk before it
    /// returns, so an acknowledged report survives a power cut or an OS crash.
    pub async fn connect(url: &SecretString, pool: PoolConfig) -> Result<Self> {
        install_default_drivers();
        let raw = url.expose_secret();
        let (engine, url) = if raw.starts_with("sqlite:") {
            (Engine::Sqlite, sqlite_url(raw))
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
        let applied: i64 =
            match sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
            {
                Ok(n) => n,
                // No bookkeeping table yet: nothing is applied.
                Err(sqlx::Error::Database(_)) => 0,
                Err(e) => return Err(e.into()),
            };
        Ok(known.saturating_sub(usize::try_from(applied).unwrap_or(0)))
    }

    /// Applies the embedded migrations for this engine; a no-op when up to date.
    pub async fn migrate(&self) -> Result<()> {
        self.migrator()
            .run(&self.pool)
            .await
            .map_err(|source| DbError::Migrate { source })
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

/// Adds `mode=rwc` so that a missing file is created, and creates its folder.
fn sqlite_url(raw: &str) -> String {
    let rest = raw
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let path = rest.split('?').next().unwrap_or(rest);
    if !path.is_empty()
        && path != ":memory:"
        && let Some(parent) = Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        // A failure here surfaces as a clear connect error just after.
        let _ = std::fs::create_dir_all(parent);
    }
    if raw.contains("mode=") {
        raw.to_owned()
    } else if raw.contains('?') {
        format!("{raw}&mode=rwc")
    } else {
        format!("{raw}?mode=rwc")
    }
}

/// Milliseconds since the Unix epoch, the unit of every timestamp column.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
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
        let url = sqlite_url(&format!("sqlite://{}", dir.path().join("t.db").display()));
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
        assert_eq!(sqlite_url("sqlite::memory:"), "sqlite::memory:?mode=rwc");
        assert_eq!(
            sqlite_url("sqlite://x.db?cache=shared"),
            "sqlite://x.db?cache=shared&mode=rwc"
        );
        assert_eq!(sqlite_url("sqlite://x.db?mode=ro"), "sqlite://x.db?mode=ro");
    }
}
