//! This process as an instance: a name that a restart on the same host takes again,
//! a heartbeat row in `instances`, and the watch on the other instances that returns
//! a dead one's copies to the queue.
//!
//! The name is `<host>:<id>`. The id is kept in a slot file under the system's
//! temporary folder (`museum-instances/slot-N`), and a process holds its slot with
//! an exclusive file lock for as long as it lives. The kernel drops the lock when the
//! process dies, however it dies; so the process that takes the slot next is sure
//! that the name's previous holder is gone, and takes its copies back at once.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use tokio::sync::Notify;

use crate::db::copies::{reclaim_leases, release_leases};
use crate::db::{Db, DbError, instances, now_millis};
use crate::jobs::{Backoff, Job, Step};
use crate::time::millis;

/// Slots tried before giving up on a name that survives restarts.
const SLOTS: usize = 256;

/// This process's instance name, and the lock on its slot (held until dropped).
#[derive(Debug)]
pub struct Instance {
    name: String,
    _slot: Option<File>,
}

impl Instance {
    /// Takes the lowest free slot on this host, and with it the name of the last
    /// process that held it. Without a usable slot folder the name is new each time
    /// (a restart then waits for `replication.instance-timeout` like any other
    /// instance would).
    pub fn acquire() -> Self {
        let host = host_name();
        let dir = std::env::temp_dir().join("museum-instances");
        match take_slot(&dir) {
            Some((id, file)) => Self {
                name: format!("{host}:{id}"),
                _slot: Some(file),
            },
            None => {
                tracing::info!(
                    folder = %dir.display(),
                    "no instance slot could be locked; this run's instance name is new"
                );
                Self::named(&format!("{host}:{}", fresh_id()))
            }
        }
    }

    fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            _slot: None,
        }
    }

    /// The instance name; its workers' lease owners are `<name>/<worker>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The prefix of every lease owner of this instance.
    pub fn owner_prefix(&self) -> String {
        owner_prefix(&self.name)
    }

    /// Records this instance as running. Copies still leased to its name belong to
    /// its previous run, which is dead (this process holds the slot): they go back to
    /// the queue at once. Returns how many did.
    pub async fn register(&self, db: &Db) -> Result<u64, DbError> {
        let now = now_millis();
        let taken_back = reclaim_leases(
            db,
            &self.owner_prefix(),
            now,
            "museum restarted while copying",
        )
        .await?;
        instances::register(db, &self.name, now).await?;
        Ok(taken_back)
    }

    /// Returns the copies this instance holds to the queue and removes its row (a
    /// clean shutdown). Returns how many copies went back.
    pub async fn retire(&self, db: &Db) -> Result<u64, DbError> {
        let released = release_leases(db, &self.owner_prefix(), now_millis()).await?;
        instances::remove(db, &self.name).await?;
        Ok(released)
    }
}

fn owner_prefix(name: &str) -> String {
    format!("{name}/")
}

/// The heartbeat on the job runner: a step beats for `name` and returns to the
/// queue the copies of instances silent for longer than `timeout`, waking the
/// workers on `wakeup` when it did; then it is idle for a quarter of `timeout`.
#[derive(Debug)]
pub struct Heartbeat {
    db: Db,
    name: String,
    timeout: Duration,
    wakeup: Arc<Notify>,
}

impl Heartbeat {
    pub fn new(db: Db, name: String, timeout: Duration, wakeup: Arc<Notify>) -> Self {
        Self {
            db,
            name,
            timeout,
            wakeup,
        }
    }

    /// The time between beats.
    fn period(&self) -> Duration {
        self.timeout / 4
    }
}

impl Job for Heartbeat {
    fn name(&self) -> &'static str {
        "heartbeat"
    }

    /// Never longer than a period: a longer wait after a failed beat would have the
    /// other instances count this one dead while the database is back.
    fn backoff(&self) -> Backoff {
        Backoff {
            initial: Backoff::DEFAULT.initial.min(self.period()),
            max: self.period(),
        }
    }

    async fn step(&mut self) -> anyhow::Result<Step> {
        // Every instance's beats and cutoffs by one clock, the database's. The beat
        // goes on by the clock it had when this read fails.
        if let Err(e) = crate::db::clock::sync(&self.db).await {
            tracing::warn!(error.message = %e, "could not read the database's clock");
        }
        let now = now_millis();
        if !instances::beat(&self.db, &self.name, now)
            .await
            .context("beating for this instance")?
        {
            tracing::warn!(
                instance = %self.name,
                "this instance was counted dead (its heartbeat stopped for longer than replication.instance-timeout) and its copies were returned to the queue; registering again"
            );
            instances::register(&self.db, &self.name, now)
                .await
                .context("registering this instance again")?;
        }
        let taken = take_over_dead(&self.db, &self.name, now, self.timeout)
            .await
            .context("checking for dead instances")?;
        if taken > 0 {
            self.wakeup.notify_waiters();
        }
        Ok(Step::Idle(self.period()))
    }
}

/// Returns the copies of every instance but `me` that has not beaten for `timeout`
/// to the queue, and removes their rows. Returns how many copies went back.
pub async fn take_over_dead(
    db: &Db,
    me: &str,
    now: i64,
    timeout: Duration,
) -> Result<u64, DbError> {
    let cutoff = now - millis(timeout);
    let mut total = 0;
    for dead in instances::silent_since(db, cutoff).await? {
        if dead == me {
            continue;
        }
        let reason = format!(
            "its museum instance {dead} stopped (no heartbeat for {timeout:?}, replication.instance-timeout)"
        );
        let n = reclaim_leases(db, &owner_prefix(&dead), now, &reason).await?;
        instances::remove_silent(db, &dead, cutoff).await?;
        tracing::info!(instance = %dead, copies = n, "took over a dead instance's copies");
        total += n;
    }
    Ok(total)
}

/// The host's name, reduced to characters safe in a lease owner.
fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "museum".to_owned()
    } else {
        name
    }
}

/// A short random id, unique enough to tell processes and runs apart in lease owners.
pub fn fresh_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// Locks the lowest free slot file in `dir`; returns the id it keeps (writing a new
/// one into a new slot) and the locked file.
fn take_slot(dir: &Path) -> Option<(String, File)> {
    std::fs::create_dir_all(dir).ok()?;
    (0..SLOTS).find_map(|slot| {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(format!("slot-{slot}")))
            .ok()?;
        file.try_lock().ok()?;
        let mut id = String::new();
        file.read_to_string(&mut id).ok()?;
        let id = id.trim();
        if id.len() == 12 && id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Some((id.to_owned(), file));
        }
        let id = fresh_id();
        file.set_len(0).ok()?;
        file.rewind().ok()?;
        file.write_all(id.as_bytes()).ok()?;
        file.sync_all().ok()?;
        Some((id, file))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_keeps_its_id_across_holders_and_is_held_by_one_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let (first, held) = take_slot(dir.path()).unwrap();
        let (second, other) = take_slot(dir.path()).unwrap();
        assert_ne!(first, second, "a held slot is skipped");
        drop(held);
        let (again, _held) = take_slot(dir.path()).unwrap();
        assert_eq!(
            again, first,
            "the freed slot gives its id to the next holder"
        );
        drop(other);
    }

    #[test]
    fn host_names_are_safe_in_lease_owners() {
        let name = host_name();
        assert!(!name.is_empty());
        assert!(!name.contains('/') && !name.contains(':'), "{name}");
    }
}
