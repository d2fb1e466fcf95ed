//! museum's entry point: parse the command line and run it.

use std::time::Duration;

use clap::Parser;

/// How long an ending command waits for the event webhook to take what is queued.
const WEBHOOK_FLUSH: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = museum::app::cli::Cli::parse();
    let result = cli.run().await;
    let undelivered = museum::observe::telemetry::flush_webhook(WEBHOOK_FLUSH).await;
    if undelivered > 0 {
        tracing::warn!(
            undelivered,
            "museum exits with events the webhook has not taken; they are in the log"
        );
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.is::<museum::app::cli::Failed>() => std::process::ExitCode::from(1),
        Err(e) => {
            eprintln!("museum: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
