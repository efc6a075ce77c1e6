//! `trainer`: trains, evaluates and exports edgerec's models.
//!
//! ```text
//! trainer train --format movielens --input data/ml-100k --dataset movielens --out models/movielens
//! trainer eval-peers --format movielens --input data/ml-100k --report models/movielens/report.json --peers bench/out/movielens/peers.json
//! trainer report --models models [--write-docs docs/quality.md]
//! trainer query --models models/movielens --users 3
//! trainer generate --items 1000000 --events 10000000 --out data/synthetic/shop-1e6.csv
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use trainer::model::Weighting;
use trainer::split::{self, Protocol};
use trainer::train::{self, Report, TrainConfig};
use trainer::{data, peers, query, report};

/// Input formats the trainer reads.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// RecBole's MovieLens-100K atomic files (directory with ml-100k.inter/.item).
    Movielens,
    /// Instacart `df_sample.csv` (file).
    Instacart,
    /// The generic CSV format: user,item,time[,weight][,title] (file).
    Csv,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProtocolArg {
    /// Last 20% of each user's events; seen items excluded.
    LastFraction,
    /// Last basket (same time) per user; repeat purchases count.
    LastBasket,
}

#[derive(Parser)]
#[command(about = "Train, evaluate and export edgerec's full and edge models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Input {
    /// Log format.
    #[arg(long, value_enum, required_unless_present = "events", conflicts_with = "events")]
    format: Option<Format>,
    /// Directory (movielens) or file (instacart, csv).
    #[arg(long, required_unless_present = "events", conflicts_with = "events")]
    input: Option<PathBuf>,
    /// Read the log from an event store instead (the origin's `--events`):
    /// `sqlite:PATH` or `postgres://user:password@host:port/db`.
    #[arg(long)]
    events: Option<String>,
    /// Protocol for `csv` logs (movielens: last-fraction, instacart: last-basket).
    #[arg(long, value_enum, default_value = "last-fraction")]
    protocol: ProtocolArg,
}

/// What a training run tries and within which budgets: `train` and `retrain` alike.
#[derive(clap::Args)]
struct Tuning {
    /// Items need at least this many training interactions.
    #[arg(long, default_value_t = 2)]
    min_count: u64,
    /// EASE L2 strengths to try.
    #[arg(long, value_delimiter = ',', default_values_t = [50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, 6400.0])]
    lambdas: Vec<f64>,
    /// Buy-again weights to try (last-basket protocol only).
    #[arg(long, value_delimiter = ',', default_values_t = [0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0])]
    betas: Vec<f64>,
    /// Recency decays of the input to try, in (0, 1]: the k-th newest history
    /// entry weighs decay^k (1 = plain counts); tuned at the chosen λ.
    #[arg(long, value_delimiter = ',', default_values_t = [1.0, 0.995, 0.99, 0.985, 0.98, 0.95, 0.9, 0.8, 0.7])]
    decays: Vec<f64>,
    /// Edge ranks to try.
    #[arg(long, value_delimiter = ',', default_values_t = [32, 64, 128, 256])]
    edge_ranks: Vec<usize>,
    /// Largest edge ONNX file in bytes.
    #[arg(long, default_value_t = 2_000_000)]
    edge_budget: usize,
    /// Let the edge model run the served SASRec (plus a low-rank EASE) when it
    /// fits the budget and wins on validation; it then costs every edge
    /// request ~1 ms of CPU instead of ~0.14 ms (docs/performance.md).
    #[arg(long)]
    edge_sequence: bool,
    /// Sequence model (SASRec) training: `full` tunes on validation, `short`
    /// is a fixed two-epoch run for tests, `off` trains EASE only.
    #[arg(long, value_enum, default_value = "full")]
    schedule: trainer::sequence::Schedule,
    /// Seed of the sequence model's training.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Memory EASE may use (GiB); larger catalogs are refused before allocating.
    #[arg(long, default_value_t = 12.0)]
    ease_memory_budget_gib: f64,
}

impl Tuning {
    /// The pipeline's settings for `dataset` under `protocol`, written to `out_dir`.
    ///
    /// # Errors
    /// A non-positive λ, edge rank or memory budget, named by its flag.
    fn config(
        self,
        dataset: String,
        (protocol, weighting): (Protocol, Weighting),
        out_dir: PathBuf,
        splits_dir: Option<PathBuf>,
    ) -> anyhow::Result<TrainConfig> {
        let Tuning { min_count, lambdas, betas, decays, edge_ranks, edge_budget, edge_sequence, schedule, seed, ease_memory_budget_gib } = self;
        anyhow::ensure!(decays.iter().all(|d| *d > 0.0 && *d <= 1.0), "--decays must lie in (0, 1]");
        anyhow::ensure!(!lambdas.is_empty() && lambdas.iter().all(|l| *l > 0.0), "--lambdas must be positive");
        anyhow::ensure!(ease_memory_budget_gib.is_finite() && ease_memory_budget_gib > 0.0, "--ease-memory-budget-gib must be positive");
        anyhow::ensure!(!edge_ranks.is_empty() && !edge_ranks.contains(&0), "--edge-ranks must be positive");
        Ok(TrainConfig {
            dataset,
            protocol,
            weighting,
            min_count,
            lambdas,
            betas: if betas.is_empty() { vec![0.0] } else { betas },
            decays,
            edge_ranks,
            edge_budget_bytes: edge_budget,
            edge_sequence,
            out_dir,
            splits_dir,
            schedule,
            seed,
            ease_memory_budget: (ease_memory_budget_gib * (1u64 << 30) as f64) as u64,
            warm_start: None,
            warm_epochs: 0,
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Tune, evaluate, refit and export one dataset.
    Train {
        #[command(flatten)]
        input: Input,
        /// Dataset name (used in versions and reports).
        #[arg(long)]
        dataset: String,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Write the validation/test splits here for the peer benchmark.
        #[arg(long)]
        splits: Option<PathBuf>,
        #[command(flatten)]
        tuning: Tuning,
    },
    /// Score the peers' rankings on the same splits and add them to a report.
    EvalPeers {
        #[command(flatten)]
        input: Input,
        /// The dataset's report.json (updated in place).
        #[arg(long)]
        report: PathBuf,
        /// peers.json written by bench/peers.py.
        #[arg(long)]
        peers: PathBuf,
    },
    /// Retrain from the event store into the model registry: candidate judged on
    /// the newest window against the serving version, refit, gate, publish
    /// (approved or refused); `--every` repeats it.
    Retrain {
        /// The event store: `sqlite:PATH` or `postgres://…` (the origin's `--events`).
        #[arg(long)]
        events: String,
        /// The model registry the regions follow.
        #[arg(long)]
        registry: PathBuf,
        /// Dataset (shop) name: the versions' prefix.
        #[arg(long)]
        dataset: String,
        /// Hold-out protocol of the shop: last-fraction (seen items excluded) or last-basket (repeats count).
        #[arg(long, value_enum, default_value = "last-fraction")]
        protocol: ProtocolArg,
        /// Held-out window: the newest events, e.g. `1day`, `6h` (widened to reach --min-eval-users).
        #[arg(long, default_value = "1day")]
        eval_window: humantime::Duration,
        /// Fewest shoppers the held-out window scores.
        #[arg(long, default_value_t = 100)]
        min_eval_users: usize,
        /// Largest tolerated drop of next-window NDCG@20 against serving, relative.
        #[arg(long, default_value_t = 0.02)]
        max_ndcg_drop: f64,
        /// Largest full.onnx, bytes.
        #[arg(long, default_value_t = 512_000_000)]
        max_full_bytes: u64,
        /// Largest p99 of one full-model request through tract, ms.
        #[arg(long, default_value_t = 50.0)]
        max_p99_ms: f64,
        /// Python with onnxruntime for the parity check (default: .venv/bin/python when present).
        #[arg(long)]
        ort_python: Option<PathBuf>,
        /// Without that Python: the `origin` binary whose `origin parity` checks it (default: `origin` beside this binary, as in the image).
        #[arg(long)]
        ort_origin: Option<PathBuf>,
        #[command(flatten)]
        tuning: Tuning,
        /// Repeat every so long (e.g. `1h`); once when omitted.
        #[arg(long)]
        every: Option<humantime::Duration>,
        /// Keep this many servable versions (and as many refused or bad) after each run.
        #[arg(long, default_value_t = 5)]
        keep: usize,
        /// Start the sequence model from the serving version's parameters (new
        /// items appended) and train at most --warm-epochs, instead of tuning from scratch.
        #[arg(long)]
        warm_start: bool,
        /// Most epochs of a warm-started refresh (early stopping on validation).
        #[arg(long, default_value_t = 3)]
        warm_epochs: usize,
    },
    /// Copy a dataset's log into an event store (ids `import-<dataset>-<n>`: importing twice stores nothing twice).
    Import {
        #[command(flatten)]
        input: Input,
        /// Dataset name (in the event ids).
        #[arg(long)]
        dataset: String,
        /// The event store to fill.
        #[arg(long)]
        to: String,
        /// Only events before this quantile of the log's times (e.g. 0.8: the older 80 %).
        #[arg(long)]
        until_quantile: Option<f64>,
        /// Only events from this quantile of the log's times on (e.g. 0.8: the newest 20 %).
        #[arg(long)]
        from_quantile: Option<f64>,
    },
    /// Print the quality table of every dataset under a models directory.
    Report {
        /// Directory holding <dataset>/report.json.
        #[arg(long, default_value = "models")]
        models: PathBuf,
        /// Also write the table as markdown to this file.
        #[arg(long)]
        write_docs: Option<PathBuf>,
    },
    /// Measure cold start on MovieLens: the newest items hidden from training, reached through the live catalog's slots.
    ColdStart {
        /// The MovieLens directory (ml-100k.inter, ml-100k.item with genres).
        #[arg(long, default_value = "data/ml-100k")]
        input: PathBuf,
        /// Share of the catalog held out as new (the newest by first interaction).
        #[arg(long, default_value_t = 0.05)]
        new_fraction: f64,
        /// EASE L2 strength.
        #[arg(long, default_value_t = 400.0)]
        lambda: f64,
        /// Also write the table as markdown to this file.
        #[arg(long)]
        write_docs: Option<PathBuf>,
    },
    /// Write a synthetic shop log (Zipf popularity, topics, item chains) as CSV.
    Generate {
        /// Catalog size.
        #[arg(long)]
        items: usize,
        /// Interactions (rows) to write.
        #[arg(long)]
        events: usize,
        /// Seed of every random choice.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// CSV file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Answer real queries through `shared` (tract) with the exported models.
    Query {
        /// A model directory (models/<dataset>).
        #[arg(long)]
        models: PathBuf,
        /// How many test users to show.
        #[arg(long, default_value_t = 3)]
        users: usize,
    },
}

fn protocol_of(input: &Input) -> (Protocol, Weighting) {
    // An event store reads like a CSV.
    match (input.format.unwrap_or(Format::Csv), input.protocol) {
        (Format::Movielens, _) | (Format::Csv, ProtocolArg::LastFraction) => (Protocol::LastFraction { fraction: 0.2 }, Weighting::Binary),
        (Format::Instacart, _) | (Format::Csv, ProtocolArg::LastBasket) => (Protocol::LastBasket, Weighting::Count),
    }
}

fn load(input: &Input) -> anyhow::Result<data::InteractionLog> {
    let started = std::time::Instant::now();
    let (log, name) = match (&input.events, input.format, &input.input) {
        (Some(url), _, _) => (data::load_store(url, &data::LogLimits::default())?, url.clone()),
        (None, Some(format), Some(path)) => (
            match format {
                Format::Movielens => data::load_movielens(path)?,
                Format::Instacart => data::load_instacart(path)?,
                Format::Csv => data::load_csv(path)?,
            },
            path.display().to_string(),
        ),
        _ => anyhow::bail!("give --format and --input, or --events"),
    };
    eprintln!(
        "loaded {}: {} users, {} items, {} interactions in {:.2} s",
        name,
        log.users.len(),
        log.items.len(),
        log.events.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(log)
}

fn read_report(path: &Path) -> anyhow::Result<Report> {
    serde_json::from_slice(&std::fs::read(path).with_context(|| format!("reading {}", path.display()))?).with_context(|| format!("parsing {}", path.display()))
}

// Training allocates and frees tensors of tens of MB every step; glibc returns
// those to the OS each time (mmap/munmap, then page faults on reuse), which cost
// a fifth of the sequence model's training time. mimalloc keeps them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    faer::set_global_parallelism(faer::Par::rayon(0));
    match Cli::parse().command {
        Command::Train { input, dataset, out, splits, tuning } => {
            let cfg = tuning.config(dataset, protocol_of(&input), out, splits)?;
            let log = load(&input)?;
            let report = train::run(&log, &cfg)?;
            eprintln!("{}: trained, evaluated and exported to {} in {:.1} s", cfg.dataset, cfg.out_dir.display(), report.train_seconds);
        }
        Command::EvalPeers { input, report, peers } => {
            let log = load(&input)?;
            let (protocol, _) = protocol_of(&input);
            let test = split::split(&log.events, protocol);
            let val = split::split(&test.train, protocol);
            let mut r = read_report(&report)?;
            r.peers = peers::evaluate(&peers, &log, &val, &test)?;
            std::fs::write(&report, serde_json::to_vec_pretty(&r)?)?;
        }
        Command::Report { models, write_docs } => {
            let mut reports = Vec::new();
            for entry in std::fs::read_dir(&models).with_context(|| format!("reading {}", models.display()))? {
                let path = entry?.path().join("report.json");
                if path.exists() {
                    reports.push(read_report(&path)?);
                }
            }
            anyhow::ensure!(!reports.is_empty(), "no report.json under {}: train first", models.display());
            reports.sort_by(|a, b| a.dataset.cmp(&b.dataset));
            report::print(&reports);
            if let Some(path) = write_docs {
                let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
                std::fs::write(&path, report::markdown(&reports, &date[..10]))?;
                eprintln!("wrote {}", path.display());
            }
        }
        Command::Query { models, users } => query::run(&models, users)?,
        Command::Retrain {
            events,
            registry,
            dataset,
            protocol,
            eval_window,
            min_eval_users,
            max_ndcg_drop,
            max_full_bytes,
            max_p99_ms,
            ort_python,
            ort_origin,
            tuning,
            every,
            keep,
            warm_start,
            warm_epochs,
        } => {
            let (protocol, weighting) = protocol_of(&Input { format: None, input: None, events: Some(events.clone()), protocol });
            let default_python = PathBuf::from(".venv/bin/python");
            let cfg = trainer::retrain::RetrainConfig {
                events,
                registry: registry.clone(),
                // `out_dir` is the retrain's work directory, set per run.
                train: TrainConfig { warm_epochs, ..tuning.config(dataset, (protocol, weighting), PathBuf::new(), None)? },
                warm_start,
                eval_window_ms: eval_window.as_millis() as i64,
                min_eval_users,
                gate: trainer::retrain::Gate {
                    max_ndcg_drop,
                    max_full_bytes,
                    max_p99_ms,
                    ort_python: ort_python.or_else(|| default_python.exists().then_some(default_python)),
                    ort_parity_script: PathBuf::from("bench/ort_parity.py"),
                    ort_origin: ort_origin.or_else(|| {
                        let beside = std::env::current_exe().ok()?.with_file_name("origin");
                        beside.exists().then_some(beside)
                    }),
                },
            };
            loop {
                let started = std::time::Instant::now();
                match trainer::retrain::run(&cfg) {
                    Ok(verdict) => {
                        println!("{}", serde_json::to_string_pretty(&verdict)?);
                        let removed = registry::Registry::open(&registry)?.retain(keep)?;
                        eprintln!(
                            "retrain: {} {} in {:.0} s; retention removed {removed:?}",
                            verdict.version,
                            if verdict.approved { "approved" } else { "REFUSED" },
                            started.elapsed().as_secs_f64()
                        );
                    }
                    Err(e) if every.is_some() => eprintln!("retrain failed, next run as scheduled: {e:#}"),
                    Err(e) => return Err(e),
                }
                let Some(every) = every else { break };
                std::thread::sleep(every.saturating_sub(started.elapsed()));
            }
        }
        Command::Import { input, dataset, to, until_quantile, from_quantile } => {
            let log = load(&input)?;
            let mut times: Vec<i64> = log.events.iter().map(|e| e.time).collect();
            times.sort_unstable();
            let at = |q: f64| -> anyhow::Result<i64> {
                anyhow::ensure!((0.0..=1.0).contains(&q), "quantiles lie in [0, 1], got {q}");
                Ok(times[((times.len() - 1) as f64 * q).round() as usize])
            };
            let range = from_quantile.map(at).transpose()?.unwrap_or(i64::MIN)..until_quantile.map(at).transpose()?.unwrap_or(i64::MAX);
            // MovieLens and CSV times are Unix seconds; Instacart's are order numbers (kept as ms: only their order matters).
            let (kind, scale) = match input.format {
                Some(Format::Instacart) => ("purchase", 1),
                _ => ("view", 1000),
            };
            let (stored, duplicates) = trainer::retrain::import(&log, &dataset, &to, kind, scale, range)?;
            eprintln!("imported {dataset} into {to}: {stored} events stored, {duplicates} already there");
        }
        Command::ColdStart { input, new_fraction, lambda, write_docs } => {
            let log = data::load_movielens(&input)?;
            let genres = data::load_movielens_genres(&input)?;
            let r = trainer::cold_start::evaluate(&log, &genres, new_fraction, lambda)?;
            let md =
                trainer::cold_start::markdown(&r, &format!("trainer cold-start --input {} --new-fraction {new_fraction} --lambda {lambda}", input.display()));
            println!("{md}");
            if let Some(path) = write_docs {
                std::fs::write(&path, md)?;
                eprintln!("wrote {}", path.display());
            }
        }
        Command::Generate { items, events, seed, out } => {
            let started = std::time::Instant::now();
            let users = trainer::synthetic::write_csv(trainer::synthetic::ShopShape { items, events, seed }, &out)?;
            eprintln!("wrote {}: {events} events of {users} users over {items} items in {:.1} s", out.display(), started.elapsed().as_secs_f64());
        }
    }
    Ok(())
}
