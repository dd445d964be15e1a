//! `weir`: a self-hosted Smart Connect service for Apache Kafka.

mod cli;
mod config;
mod crypto;
mod kafka;
mod node;
mod protocol;
mod replicator;
mod server;
mod sign;
mod sink;
mod store;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Weir serves the Smart Connect part of the DMS for Kafka v2 API and runs the
/// dump nodes behind it.
#[derive(Debug, Parser)]
#[command(name = "weir", version, rename_all = "kebab-case")]
struct Cli {
    #[command(flatten)]
    client: cli::ClientOptions,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane: the HTTP API, jobs and node supervision.
    Server(server::ServerArgs),
    /// Run a dump node of a connector.
    Node(node::NodeArgs),
    /// Generate master keys for encrypting stored secrets.
    #[command(subcommand)]
    MasterKey(MasterKeyCommand),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

#[derive(Debug, Subcommand)]
enum MasterKeyCommand {
    /// Print a new random master key (32 bytes as base64) for
    /// WEIR_MASTER_KEY or server.master_key_file.
    Generate,
}

fn init_logging() {
    let filter = EnvFilter::try_from_env("WEIR_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info,librdkafka=warn,rdkafka=warn"));
    let json = std::env::var("WEIR_LOG_FORMAT").is_ok_and(|v| v == "json");
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Server(args) => {
                init_logging();
                report(server::run(args).await)
            }
            Command::Node(args) => {
                init_logging();
                report(node::run(args).await)
            }
            Command::MasterKey(MasterKeyCommand::Generate) => {
                println!("{}", crypto::generate_key_text());
                ExitCode::SUCCESS
            }
            Command::Client(command) => cli::run_and_report(cli.client, command).await,
        }
    })
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "Stopped with an error.");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
