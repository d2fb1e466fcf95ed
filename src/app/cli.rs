//! The command line: `museum serve` (the default), `museum migrate`,
//! `museum token create|revoke`, `museum user quota|show|list`, `museum doctor`,
//! `museum replicate …`, `museum scrub`, `museum reconcile`, `museum import`, and
//! `museum openapi`.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::accounts::{self, QuotaRule};
use crate::app::ops;
use crate::app::startup::{Application, create_db, open_db, open_db_for_scan};
use crate::config::{self, Settings, Sources};
use crate::db::Db;
use crate::maintenance::primary::{self, OldPrimary};
use crate::maintenance::reconcile::{self, Finding, ReconcileOptions};
use crate::maintenance::scrub::{PassEnd, ScrubLimits};
use crate::storage::Buckets;
use crate::uploads::import::{self, ImportOptions};

/// museum keeps every uploaded object safe in hot, cold and glacier S3 buckets.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default when no command is given).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Users' storage quotas and usage.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Check the database and every configured bucket; exits 1 if a check fails.
    Doctor,
    /// Inspect and repair replication.
    Replicate {
        #[command(subcommand)]
        action: ReplicateAction,
    },
    /// Check every tier of every object (HEAD, and a sample read in full with MD5),
    /// queue copies that heal what is missing or damaged, and report objects with no
    /// intact tier left (exit status 1). Resumes an unfinished pass; Ctrl-C saves
    /// its place.
    Scrub {
        /// Start a new pass instead of resuming the unfinished one.
        #[arg(long)]
        restart: bool,
        /// The share of tiers to read in full (0 to 1); default scrub.read-sample.
        #[arg(long)]
        read_sample: Option<f64>,
        /// Ignore scrub.objects-per-second and scrub.bytes-per-second.
        #[arg(long)]
        no_limit: bool,
    },
    /// List every bucket and compare it with the database: objects no record knows
    /// (older than --grace, never an upload under way), and records no bucket holds.
    Reconcile {
        /// Delete the objects no record knows, in each bucket where they are few
        /// (see --max-unknown); never when the database records no object at all.
        #[arg(long)]
        apply: bool,
        /// With --apply, a bucket with more unknown objects than this, and more than
        /// --max-unknown-share of its listing, is left untouched: the database is
        /// more likely the wrong one than the bucket full of strays.
        #[arg(long, default_value_t = 10)]
        max_unknown: u64,
        /// See --max-unknown: the share of a bucket's listing (0 to 1).
        #[arg(long, default_value_t = 0.1)]
        max_unknown_share: f64,
        /// With --apply, delete this bucket's unknown objects however many there
        /// are (repeat for more buckets).
        #[arg(long, value_name = "BUCKET")]
        allow_mass_delete: Vec<String>,
        /// Print one JSON object per finding, then a summary, for scripts.
        #[arg(long)]
        json: bool,
        /// Leave alone objects written more recently than this (e.g. 12h, 7d).
        #[arg(long, default_value = "1d")]
        grace: crate::config::HumanDuration,
    },
    /// Bring a folder of files into museum as a user's objects: each is sent to the
    /// hot primary with its MD5, recorded, and queued for replication. A second run
    /// skips what is there; a run cut short resumes.
    Import {
        /// The folder; every file under it is imported.
        dir: std::path::PathBuf,
        /// The user the objects belong to.
        #[arg(long)]
        user: i64,
    },
    /// Move the hot primary to another configured bucket, online.
    Primary {
        #[command(subcommand)]
        action: PrimaryAction,
    },
    /// Print the API's OpenAPI document (the one served at /openapi.json); needs no
    /// configuration.
    Openapi,
}

#[derive(Debug, Subcommand)]
enum ReplicateAction {
    /// Copies per bucket and state, the oldest waiting copy, the last errors, the
    /// scrub's progress and lost objects; or, with --object, each tier of one object.
    Status {
        /// One object's tiers, as JSON (the same as GET /files/{id}/status).
        #[arg(long)]
        object: Option<i64>,
    },
    /// Queue copies for objects missing in a present bucket (after adding a tier).
    Backfill,
    /// HEAD every tier of every object, the primary included; compare size and ETag
    /// with the record; re-queue what is missing and restore what was replaced (a
    /// one-shot scrub without full reads or rate limits).
    Verify {
        /// Check this many objects chosen at random instead of all of them.
        #[arg(long)]
        sample: Option<u32>,
    },
    /// Re-queue every copy marked failed (after fixing what made it fail).
    Retry,
}

#[derive(Debug, Subcommand)]
enum PrimaryAction {
    /// Switch new uploads to --to at once (every instance follows within seconds),
    /// then move each object the old primary holds once its copy there is verified.
    /// Run it again to finish a move cut short.
    Move {
        /// The new primary: b2-eu-cen or wasabi-eu-central-2-v3.
        #[arg(long)]
        to: String,
        /// What becomes of the old primary's copies: kept as a replica tier, or
        /// deleted (to retire the bucket).
        #[arg(long, value_enum, default_value = "replica")]
        then: Then,
    },
}

/// `--then` of `museum primary move`: the command line's words for
/// [`OldPrimary`], which knows nothing of clap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Then {
    /// The old primary's copies stay, as a verified replica tier.
    Replica,
    /// They are deleted once each object is moved (to retire the bucket).
    Empty,
}

impl From<Then> for OldPrimary {
    fn from(then: Then) -> Self {
        match then {
            Then::Replica => Self::Replica,
            Then::Empty => Self::Empty,
        }
    }
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Create a token for a user; the token alone is printed on the last line.
    Create {
        /// The user ID the token acts for.
        #[arg(long)]
        user: i64,
        /// When the token stops working, RFC 3339 (e.g. 2030-01-01T00:00:00Z);
        /// without it, the token works until revoked.
        #[arg(long)]
        expires_at: Option<jiff::Timestamp>,
    },
    /// Revoke one token (--token) or every token of a user (--user).
    Revoke {
        /// The token to revoke. It may begin with `-` (tokens are base64url).
        #[arg(
            long,
            conflicts_with = "user",
            required_unless_present = "user",
            allow_hyphen_values = true
        )]
        token: Option<String>,
        /// Revoke every token of this user.
        #[arg(long)]
        user: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
enum UserAction {
    /// Set a user's storage quota in bytes (0 allows no uploads), or --default.
    Quota {
        #[arg(long)]
        user: i64,
        /// The quota in bytes.
        #[arg(
            long,
            allow_negative_numbers = true,
            conflicts_with = "default",
            required_unless_present = "default"
        )]
        bytes: Option<i64>,
        /// Go back to quota.default-bytes.
        #[arg(long)]
        default: bool,
    },
    /// A user's usage and quota, as JSON.
    Show {
        #[arg(long)]
        user: i64,
    },
    /// Every user with usage and quota, as JSON lines.
    List,
}

/// A command that has printed why it failed: museum exits 1, with nothing more said.
#[derive(Debug, thiserror::Error)]
#[error("the command failed; its output says why")]
pub struct Failed;

/// Loads the configuration, printing each warning; a bad configuration is an error
/// listing every problem.
fn load_settings() -> anyhow::Result<Settings> {
    let mut loaded = config::load(&Sources::from_process())?;
    // Every command talks to the embedded server with the keys it made (only
    // `serve` makes them, on its first start).
    crate::storage::embedded::keys::adopt(&mut loaded.settings.s3, false)?;
    crate::observe::telemetry::init(
        loaded.settings.log.format,
        loaded.settings.events.webhook_url.as_ref(),
    );
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    Ok(loaded.settings)
}

impl Cli {
    /// Runs the chosen command to completion.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command.unwrap_or(Command::Serve) {
            Command::Openapi => {
                println!("{}", crate::api::openapi::document_json());
                Ok(())
            }
            Command::Serve => {
                let settings = load_settings()?;
                let app = Application::build(settings).await?;
                let cancel = CancellationToken::new();
                tokio::spawn(shutdown_on_signal(cancel.clone()));
                app.run(cancel).await
            }
            Command::Migrate => {
                let settings = load_settings()?;
                create_db(&settings).await?.close().await;
                println!("migrations applied");
                Ok(())
            }
            Command::Doctor => {
                let settings = load_settings()?;
                let checks = crate::doctor::run(&settings).await;
                for check in &checks {
                    println!("{check}");
                }
                let failed: Vec<&str> = checks
                    .iter()
                    .filter(|c| c.failed())
                    .map(|c| c.subject.as_str())
                    .collect();
                if failed.is_empty() {
                    println!("all checks passed");
                    Ok(())
                } else {
                    let mut subjects = failed;
                    subjects.dedup();
                    println!("checks failed for: {}", subjects.join(", "));
                    Err(Failed.into())
                }
            }
            Command::Replicate { action } => {
                let settings = load_settings()?;
                let db = open_db(&settings).await?;
                let buckets =
                    Buckets::from_config(&settings.s3).context("building bucket clients")?;
                match action {
                    ReplicateAction::Status { object: None } => {
                        print!("{}", ops::status(&db, &buckets).await?);
                    }
                    ReplicateAction::Status { object: Some(id) } => {
                        match crate::maintenance::status::object_status(&db, id).await? {
                            Some((_, status)) => {
                                println!(
                                    "{}",
                                    serde_json::to_string_pretty(&status.for_operators())?
                                );
                            }
                            None => {
                                db.close().await;
                                anyhow::bail!("no live object has ID {id}");
                            }
                        }
                    }
                    ReplicateAction::Backfill => {
                        let r = ops::backfill(&db, &buckets).await?;
                        println!(
                            "backfill: {} objects scanned, {} copies queued",
                            r.objects, r.queued
                        );
                    }
                    ReplicateAction::Verify { sample } => {
                        let r = ops::verify(&db, &buckets, sample.map(i64::from)).await?;
                        println!(
                            "verify: {} tiers of {} objects checked (each object's own bucket and every copy), {} re-queued, {} tampered, {} could not be checked, {} lost",
                            r.checked, r.objects, r.requeued, r.tampered, r.unreachable, r.lost
                        );
                    }
                    ReplicateAction::Retry => {
                        println!(
                            "retry: {} failed copies re-queued",
                            ops::retry_failed(&db).await?
                        );
                    }
                }
                db.close().await;
                Ok(())
            }
            Command::Scrub {
                restart,
                read_sample,
                no_limit,
            } => {
                let settings = load_settings()?;
                let db = open_db(&settings).await?;
                let buckets =
                    Buckets::from_config(&settings.s3).context("building bucket clients")?;
                let mut limits = if no_limit {
                    ScrubLimits {
                        read_sample: settings.scrub.read_sample,
                        ..ScrubLimits::heads_only()
                    }
                } else {
                    ScrubLimits::from_config(&settings.scrub)
                };
                if let Some(share) = read_sample {
                    anyhow::ensure!(
                        (0.0..=1.0).contains(&share),
                        "--read-sample must be a share between 0 and 1, e.g. 0.01"
                    );
                    limits.read_sample = share;
                }
                let cancel = CancellationToken::new();
                tokio::spawn(shutdown_on_signal(cancel.clone()));
                let run = ops::scrub(&db, &buckets, limits, restart, SCRUB_LEASE, &cancel).await;
                db.close().await;
                report_scrub(run?)
            }
            Command::Reconcile {
                apply,
                max_unknown,
                max_unknown_share,
                allow_mass_delete,
                json,
                grace,
            } => {
                anyhow::ensure!(
                    (0.0..=1.0).contains(&max_unknown_share),
                    "--max-unknown-share must be a share between 0 and 1, e.g. 0.1"
                );
                let settings = load_settings()?;
                for bucket in &allow_mass_delete {
                    anyhow::ensure!(
                        settings.s3.bucket(bucket).is_some(),
                        "--allow-mass-delete {bucket}: no such bucket; the buckets are {}",
                        crate::config::BUCKET_IDS.join(", ")
                    );
                }
                let db = open_db_for_scan(&settings).await?;
                let buckets =
                    Buckets::from_config(&settings.s3).context("building bucket clients")?;
                let options = ReconcileOptions {
                    apply,
                    grace: grace.get(),
                    fence: reconcile::Fence {
                        max_unknown,
                        max_unknown_share,
                        allow: allow_mass_delete,
                    },
                };
                let url = crate::db::redact_url(secrecy::ExposeSecret::expose_secret(
                    &settings.db.connection_url(),
                ));
                let result = run_reconcile(&db, &buckets, &options, json, &url).await;
                db.close().await;
                result
            }
            Command::Import { dir, user } => {
                let settings = load_settings()?;
                let db = open_db(&settings).await?;
                let buckets =
                    Buckets::from_config(&settings.s3).context("building bucket clients")?;
                let options = ImportOptions {
                    user,
                    multipart_threshold: settings.replication.multipart_threshold,
                    part_size: settings.replication.part_size,
                };
                let result = run_import(&db, &buckets, &dir, options).await;
                db.close().await;
                result
            }
            Command::Primary {
                action: PrimaryAction::Move { to, then },
            } => {
                let settings = load_settings()?;
                let db = open_db(&settings).await?;
                let buckets =
                    Buckets::from_config(&settings.s3).context("building bucket clients")?;
                primary::follow(&db, &buckets).await?;
                let result = run_primary_move(&settings, &db, &buckets, &to, then.into()).await;
                db.close().await;
                result
            }
            Command::Token { action } => {
                let settings = load_settings()?;
                let db = open_db(&settings).await?;
                let result = run_token(&db, action).await;
                db.close().await;
                result
            }
            Command::User { action } => {
                let settings = load_settings()?;
                let db = open_db(&settings).await?;
                let rule = QuotaRule::from_config(&settings.quota);
                let result = run_user(&db, &rule, action).await;
                db.close().await;
                result
            }
        }
    }
}

/// How often `museum primary move` looks for objects still on the old primary with
/// no copy queued to the new one.
const REQUEUE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// `museum primary move`: the switch, then the objects, with a progress bar. The
/// copies to the new primary are made by running museums and by a worker of this
/// command's own.
async fn run_primary_move(
    settings: &Settings,
    db: &Db,
    buckets: &Buckets,
    to: &str,
    then: OldPrimary,
) -> anyhow::Result<()> {
    let mut from = primary::stored_move_source(db).await?;
    let switched_from = primary::switch(db, buckets, to).await?;
    if from.as_deref().is_none_or(|f| f == to) {
        from = Some(switched_from);
    }
    let from = from.unwrap_or_default();
    anyhow::ensure!(
        from != to,
        "{to} is already the primary, and no move to it is unfinished"
    );
    primary::remember_move_source(db, &from).await?;
    println!("primary: new uploads go to {to} (every running museum follows within seconds)");
    let cancel = CancellationToken::new();
    tokio::spawn(shutdown_on_signal(cancel.clone()));
    let worker = crate::replication::ReplicationWorker::new(
        db.clone(),
        buckets.clone(),
        crate::observe::metrics::Metrics::new()?,
        crate::replication::WorkerConfig::from(&settings.replication),
        format!("primary-move:{}/0", std::process::id()),
    );
    let copies = tokio::spawn(worker.run(
        std::sync::Arc::new(tokio::sync::Notify::new()),
        cancel.clone(),
    ));
    let first = primary::step(db, buckets, &from, to, then).await?;
    let total = first.moved + first.left;
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {pos}/{len} objects moved · {per_sec} · ETA {eta}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar.inc(first.moved);
    let mut left = first.left;
    let mut queued_at = std::time::Instant::now();
    let mut sweep = primary::Sweep::default();
    loop {
        while left > 0 && !cancel.is_cancelled() {
            // The queueing scan reads every object still on the old primary: now and
            // then, not at every step.
            let step = if queued_at.elapsed() >= REQUEUE_EVERY {
                queued_at = std::time::Instant::now();
                primary::step(db, buckets, &from, to, then).await?
            } else {
                primary::advance(db, buckets, &from, to, then).await?
            };
            bar.inc(step.moved);
            left = step.left;
            if step.moved == 0 && left > 0 && step.failed == left {
                bar.finish_and_clear();
                cancel.cancel();
                let _ = copies.await;
                anyhow::bail!(
                    "{left} objects cannot move: their copy to {to} failed for good (museum replicate \
                     status shows why); fix the cause, run museum replicate retry, then this command again"
                );
            }
            if step.moved == 0 && left > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
        if left > 0 || cancel.is_cancelled() || then == OldPrimary::Replica {
            break;
        }
        // Nothing may land on a bucket about to be retired: uploads issued for it
        // before the switch are ended (a report already under way is counted in the
        // same transaction and moved first)...
        let (closed, still) = primary::close_uploads(db, &from).await?;
        if closed > 0 {
            bar.suspend(|| {
                println!(
                    "primary: ended {closed} uploads issued for {from} before the switch and not yet reported; the apps upload those files again, to {to}"
                );
            });
        }
        if still > 0 {
            left = still;
            bar.inc_length(still);
            continue;
        }
        // ...and bytes that a copy, a heal or a run killed mid-step left or wrote
        // back are swept, until a sweep a whole lease after the last finds nothing:
        // by then no worker that read the old layout still holds its lease.
        let settle = settings.replication.lease.get();
        let mut last = primary::sweep_moved(db, buckets, &from).await?;
        sweep.deleted += last.deleted;
        while !cancel.is_cancelled() {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(settle) => {}
            }
            last = primary::sweep_moved(db, buckets, &from).await?;
            sweep.deleted += last.deleted;
            if last.deleted == 0 {
                break;
            }
        }
        sweep.unknown = last.unknown;
        break;
    }
    bar.finish_and_clear();
    let interrupted = cancel.is_cancelled();
    cancel.cancel();
    let _ = copies.await;
    if left > 0 || interrupted {
        println!(
            "primary: stopped with {left} objects still on {from}; run the same command again to finish"
        );
        return Ok(());
    }
    primary::forget_move_source(db).await?;
    let fate = match then {
        OldPrimary::Replica => format!("{from} is now a replica tier"),
        OldPrimary::Empty => {
            let mut fate = format!("{from} holds none of them");
            if sweep.deleted > 0 {
                fate += &format!(" ({} left or written back there were swept)", sweep.deleted);
            }
            if sweep.unknown > 0 {
                fate += &format!(
                    "; it still holds {} objects no record knows (ended uploads, strays: museum reconcile lists them)",
                    sweep.unknown
                );
            }
            fate + "; remove it from the configuration to retire it"
        }
    };
    println!("primary: every object moved to {to}; {fate}; set s3.hot_storage.primary: {to}");
    Ok(())
}

/// `museum import`: a progress bar in bytes, then what was done; a file that failed
/// makes it exit 1 (run it again to retry those).
async fn run_import(
    db: &Db,
    buckets: &Buckets,
    dir: &std::path::Path,
    options: ImportOptions,
) -> anyhow::Result<()> {
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} · {bytes_per_sec} · ETA {eta}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let report = import::import(db, buckets, dir, options, |p| match p {
        import::Progress::Total(n) => bar.set_length(n),
        import::Progress::Done(n) => bar.inc(n),
    })
    .await?;
    bar.finish_and_clear();
    println!(
        "import: {} files, {} imported ({} bytes), {} already there, {} failed",
        report.files,
        report.imported,
        report.bytes,
        report.skipped,
        report.failed.len()
    );
    if report.imported > 0 {
        println!("import: their copies are queued; a running museum replicates them");
    }
    if !report.failed.is_empty() {
        for (file, why) in &report.failed {
            eprintln!("  {file}: {why}");
        }
        eprintln!("museum: run the import again to retry the files that failed");
        return Err(Failed.into());
    }
    Ok(())
}

/// `museum reconcile`: findings as they come (JSON lines with `--json`, else the
/// first 20 in a list), then a table per bucket.
async fn run_reconcile(
    db: &Db,
    buckets: &Buckets,
    options: &ReconcileOptions,
    json: bool,
    database: &str,
) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    const SHOWN: usize = 20;
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} {pos} objects listed · {per_sec}")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let mut shown = 0;
    let mut list = String::new();
    let report = reconcile::reconcile(
        db,
        buckets,
        options,
        |finding| {
            if json {
                bar.suspend(|| println!("{}", serde_json::to_string(finding).unwrap_or_default()));
                return;
            }
            shown += 1;
            if shown > SHOWN {
                return;
            }
            let _ = match finding {
                Finding::Unknown {
                    bucket,
                    key,
                    size,
                    last_modified,
                    deleted,
                } => writeln!(
                    list,
                    "  {bucket} {key} ({size} bytes, written {last_modified}){}",
                    if *deleted { ", deleted" } else { "" }
                ),
                Finding::Missing {
                    object_id,
                    key,
                    size,
                } => writeln!(
                    list,
                    "  object {object_id} {key} ({size} bytes): no bucket holds it"
                ),
            };
        },
        |n| bar.inc(n),
    )
    .await
    .context("reconciling")?;
    bar.finish_and_clear();
    let refused: Vec<&reconcile::BucketSummary> = report
        .buckets
        .iter()
        .filter(|b| b.refused.is_some())
        .collect();
    if json {
        let summary = serde_json::json!({"kind": "summary", "report": report});
        println!("{summary}");
        return if refused.is_empty() {
            Ok(())
        } else {
            Err(Failed.into())
        };
    }
    if !list.is_empty() {
        println!("findings (the first {SHOWN}; --json lists them all):");
        print!("{list}");
    }
    println!(
        "{:<24} {:>10} {:>14} {:>9} {:>14} {:>8} {:>8} {:>10}",
        "bucket", "listed", "bytes", "unknown", "unknown bytes", "deleted", "recent", "uploading"
    );
    for b in &report.buckets {
        println!(
            "{:<24} {:>10} {:>14} {:>9} {:>14} {:>8} {:>8} {:>10}",
            b.bucket,
            b.listed,
            b.listed_bytes,
            b.unknown,
            b.unknown_bytes,
            b.deleted,
            b.recent,
            b.uploading
        );
    }
    println!(
        "records: {} checked, {} whose bytes no bucket holds ({} bytes)",
        report.records, report.missing, report.missing_bytes
    );
    for b in &refused {
        let why = match b.refused {
            Some(reconcile::Refusal::EmptyDatabase) => format!(
                "the database at {database} records no object at all; deleting is refused whatever the flags"
            ),
            _ => format!(
                "{} of its {} objects are unknown to the database at {database}, more than --max-unknown {} and --max-unknown-share {}; if that database is the right one, run again with --allow-mass-delete {}",
                b.unknown,
                b.listed,
                options.fence.max_unknown,
                options.fence.max_unknown_share,
                b.bucket
            ),
        };
        eprintln!(
            "reconcile: deleted nothing in {}: {why}. Check ENTE_DB_URL (or db.*), ENVIRONMENT and the working folder.",
            b.bucket
        );
    }
    if !refused.is_empty() {
        return Err(Failed.into());
    }
    let unknown: u64 = report.buckets.iter().map(|b| b.unknown).sum();
    if unknown > 0 && !options.apply {
        println!(
            "run again with --apply to delete the {unknown} objects no record knows (a bucket where they are many is left alone: see --max-unknown)"
        );
    }
    Ok(())
}

/// How long a `museum scrub` that dies keeps its pass from the next run.
const SCRUB_LEASE: std::time::Duration = std::time::Duration::from_secs(15);

/// Prints what `museum scrub` did; an object found lost makes it exit 1 (as a failed
/// doctor check does), any other failure 2.
fn report_scrub(run: ops::ScrubRun) -> anyhow::Result<()> {
    let (end, resumed_from, report) = match run {
        ops::ScrubRun::Busy { holder, cursor } => anyhow::bail!(
            "a scrub pass is running in {holder} (past object {cursor}); wait for it, or stop \
             that process and run museum scrub again to resume its pass here"
        ),
        ops::ScrubRun::Ran {
            end,
            resumed_from,
            report,
        } => (end, resumed_from, report),
    };
    if resumed_from > 0 {
        println!("scrub: resumed the unfinished pass after object {resumed_from}");
    }
    println!("scrub: {report}");
    match end {
        PassEnd::Finished => println!("scrub: pass finished"),
        PassEnd::Stopped => {
            println!("scrub: stopped; its place is saved, run museum scrub again to resume");
        }
        PassEnd::Lost => {
            println!("scrub: another process took the pass over (this one stalled past its lease)")
        }
    }
    if report.lost > 0 {
        eprintln!(
            "museum: {} objects have no intact tier left; museum replicate status lists them",
            report.lost
        );
        return Err(Failed.into());
    }
    Ok(())
}

async fn run_token(db: &Db, action: TokenAction) -> anyhow::Result<()> {
    match action {
        TokenAction::Create { user, expires_at } => {
            let token = accounts::create_token(db, user, expires_at)
                .await
                .context("creating the token")?;
            println!("created a token for user {user}; send it as X-Auth-Token:");
            println!("{token}");
        }
        TokenAction::Revoke {
            token: Some(token), ..
        } => {
            let user = accounts::revoke_token(db, &token)
                .await
                .context("revoking the token")?;
            println!("revoked 1 token of user {user}");
        }
        TokenAction::Revoke {
            user: Some(user), ..
        } => {
            let n = accounts::revoke_user_tokens(db, user)
                .await
                .context("revoking the tokens")?;
            println!("revoked {n} tokens of user {user}");
        }
        TokenAction::Revoke { .. } => anyhow::bail!("give --token or --user"),
    }
    Ok(())
}

async fn run_user(db: &Db, rule: &QuotaRule, action: UserAction) -> anyhow::Result<()> {
    let line = |info: &accounts::UserInfo| serde_json::to_string(info).unwrap_or_default();
    match action {
        UserAction::Quota { user, bytes, .. } => {
            let info = accounts::set_quota(db, rule, user, bytes)
                .await
                .context("setting the quota")?;
            println!("{}", line(&info));
        }
        UserAction::Show { user } => {
            let info = accounts::show_user(db, rule, user)
                .await
                .context("reading the user")?;
            println!("{}", line(&info));
        }
        UserAction::List => {
            for info in accounts::list_users(db, rule)
                .await
                .context("listing users")?
            {
                println!("{}", line(&info));
            }
        }
    }
    Ok(())
}

async fn shutdown_on_signal(cancel: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
    cancel.cancel();
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command, TokenAction};

    #[test]
    fn a_token_that_begins_with_a_hyphen_is_taken_as_the_token() {
        // Tokens are base64url, whose alphabet has `-`: one in 64 begins with it.
        let cli = Cli::try_parse_from(["museum", "token", "revoke", "--token", "-4aB_c"]).unwrap();
        match cli.command {
            Some(Command::Token {
                action: TokenAction::Revoke { token, user },
            }) => {
                assert_eq!(token.as_deref(), Some("-4aB_c"));
                assert_eq!(user, None);
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}
