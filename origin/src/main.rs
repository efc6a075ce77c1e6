//! ```text
//! origin serve --models models/movielens --addr 127.0.0.1:8080
//! origin serve --registry registry --registry-track canary …
//! origin registry --registry registry list|verify|publish|promote|mark-bad|retain|backup|restore
//! origin rollout --registry registry --canary http://a:8080 --others http://b:8080 --admin-token …
//! origin probe --url http://127.0.0.1:8080/healthz   # a container's health check
//! origin parity --models models/movielens             # ONNX Runtime agrees with the trainer
//! ```

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use origin::config::ServeConfig;
use origin::registry_cli::RegistryCommand;
use origin::rollout::RolloutConfig;

#[derive(Parser)]
#[command(about = "edgerec origin: the full recommendation model over HTTP")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a model directory, or the version a registry's pointer names.
    Serve(ServeConfig),
    /// Operate a model registry.
    Registry {
        /// The registry's root directory.
        #[arg(long, env = "EDGEREC_REGISTRY")]
        registry: PathBuf,
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// Roll an approved version out: canary region first, judged on live traffic, then every region (or rolled back).
    Rollout(RolloutConfig),
    /// Check that ONNX Runtime (CPU) ranks a model directory's parity cases as the trainer did; exit 1 if not.
    Parity {
        /// The model directory (manifest.json, catalog.json, parity.json, the models).
        #[arg(long)]
        models: PathBuf,
        /// `libonnxruntime.so`.
        #[arg(long, env = "ORT_DYLIB_PATH")]
        ort_lib: PathBuf,
    },
    /// Exit 0 when `GET URL` answers 2xx within the timeout, else 1: the
    /// image's health check (the image has no shell and no curl).
    Probe {
        /// What to ask.
        #[arg(long, default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
        /// Longest wait for the answer (ms).
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(cfg) => {
            origin::telemetry::init_logging(cfg.log_format);
            tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(origin::server::serve(cfg))
        }
        Command::Registry { registry, command } => {
            println!("{}", serde_json::to_string_pretty(&origin::registry_cli::run(&registry, command)?)?);
            Ok(())
        }
        Command::Rollout(cfg) => {
            origin::telemetry::init_logging(origin::config::LogFormat::Pretty);
            let outcome = tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(origin::rollout::run(&cfg))?;
            println!("{}", serde_json::to_string_pretty(&outcome)?);
            Ok(())
        }
        Command::Parity { models, ort_lib } => {
            let rt = origin::backend::OrtRuntime::load(&ort_lib)?;
            for line in origin::parity::check(&models, &rt)? {
                println!("onnxruntime parity: {line}");
            }
            Ok(())
        }
        Command::Probe { url, timeout_ms } => {
            let status = tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
                let client = reqwest::Client::builder().timeout(std::time::Duration::from_millis(timeout_ms)).build()?;
                anyhow::Ok(client.get(&url).send().await?.status())
            })?;
            anyhow::ensure!(status.is_success(), "{url} answered {status}");
            Ok(())
        }
    }
}
