//! `origin serve --models models/movielens --addr 127.0.0.1:8080`

use clap::{Parser, Subcommand};
use origin::config::ServeConfig;

#[derive(Parser)]
#[command(about = "edgerec origin: the full recommendation model over HTTP")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a model directory.
    Serve(ServeConfig),
}

fn main() -> anyhow::Result<()> {
    let Command::Serve(cfg) = Cli::parse().command;
    origin::telemetry::init_logging(cfg.log_format);
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(origin::server::serve(cfg))
}
