//! The command line: `museum serve` (the default), `museum migrate`, and
//! `museum token create --user <id>`.

use anyhow::Context;
use base64::Engine as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::api::extract::hash_token;
use crate::config::{self, Settings, Sources};
use crate::startup::{Application, connect_db};

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
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Create a token for a user; the token alone is printed on the last line.
    Create {
        /// The user ID the token acts for.
        #[arg(long)]
        user: i64,
    },
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
            Command::Token {
                action: TokenAction::Create { user },
            } => {
                let settings = load_settings()?;
                let db = connect_db(&settings).await?;
                let mut raw = [0u8; 32];
                getrandom::fill(&mut raw)
                    .map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
                let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
                crate::db::tokens::insert_token(&db, &hash_token(&token), user)
                    .await
                    .context("storing the token")?;
                db.close().await;
                println!("created a token for user {user}; send it as X-Auth-Token:");
                println!("{token}");
                Ok(())
            }
        }
    }
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
