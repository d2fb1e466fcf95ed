//! The command line: `museum serve` (the default), `museum migrate`,
//! `museum token create|revoke`, `museum user quota|show|list`, `museum doctor`, `museum replicate …`, and
//! `museum openapi`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::accounts::{self, QuotaRule};
use crate::config::{self, Settings, Sources};
use crate::db::Db;
use crate::ops;
use crate::startup::{Application, connect_db};
use crate::storage::Buckets;

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
    /// Print the API's OpenAPI document (the one served at /openapi.json); needs no
    /// configuration.
    Openapi,
}

#[derive(Debug, Subcommand)]
enum ReplicateAction {
    /// Copies per bucket and state, the oldest waiting copy, and the last errors.
    Status,
    /// Queue copies for objects missing in a present bucket (after adding a tier).
    Backfill,
    /// HEAD every tier of every object, the primary included; compare size and ETag
    /// with the record; re-queue what is missing and restore what was replaced.
    Verify {
        /// Check this many tiers chosen at random instead of all of them.
        #[arg(long)]
        sample: Option<u32>,
    },
    /// Re-queue every copy marked failed (after fixing what made it fail).
    Retry,
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
        /// The token to revoke.
        #[arg(long, conflicts_with = "user", required_unless_present = "user")]
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

/// Loads the configuration, printing each warning; a bad configuration is an error
/// listing every problem.
fn load_settings() -> anyhow::Result<Settings> {
    let loaded = config::load(&Sources::from_process())?;
    crate::telemetry::init(loaded.settings.log.format);
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
                connect_db(&settings).await?.close().await;
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
                    std::process::exit(1);
                }
            }
            Command::Replicate { action } => {
                let settings = load_settings()?;
                let db = connect_db(&settings).await?;
                let buckets =
                    Buckets::from_config(&settings.s3).context("building bucket clients")?;
                match action {
                    ReplicateAction::Status => print!("{}", ops::status(&db, &buckets).await?),
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
                            "verify: {} tiers checked (each object's own bucket and every copy), {} re-queued, {} tampered, {} could not be checked",
                            r.checked, r.requeued, r.tampered, r.unreachable
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
            Command::Token { action } => {
                let settings = load_settings()?;
                let db = connect_db(&settings).await?;
                let result = run_token(&db, action).await;
                db.close().await;
                result
            }
            Command::User { action } => {
                let settings = load_settings()?;
                let db = connect_db(&settings).await?;
                let rule = QuotaRule::from_config(&settings.quota);
                let result = run_user(&db, &rule, action).await;
                db.close().await;
                result
            }
        }
    }
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
