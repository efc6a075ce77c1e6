//! `trainer retrain`: a fresh model from the event store, judged the way a
//! shop would judge it, into the model registry — approved for rollout, or
//! refused with the reason; nothing else changes.
//!
//! 1. **Data**: the store's whole log ([`crate::data::load_store`]).
//! 2. **Time split**: the newest window of events (`--eval-window`, widened
//!    back in time until at least `--min-eval-users` shoppers have an event in
//!    it and one before) is held out; everything before it is the training set
//!    ([`time_split`]).
//! 3. **Candidate**: the usual pipeline ([`crate::train::run`]: tune, choose,
//!    export, tract parity) on the events before the window.
//! 4. **Judge**: the candidate and the version serving now (the registry's
//!    `CURRENT`) rank every window shopper's next items through `shared`
//!    (tract), from the same history; NDCG@20 of both on the same targets.
//!    The window starts after the serving version's own training window (its
//!    record's), so neither model has seen it; too few shoppers since then
//!    and there is nothing to judge yet (no version is trained).
//! 5. **Refit**: the pipeline again on the whole log, so the published version
//!    has learnt from the newest events too (the window's figures describe its
//!    settings, as a test split does for `trainer train`'s refit).
//! 6. **Gate** ([`Gate`]): next-day NDCG@20 not worse than serving's by more
//!    than the margin; onnxruntime parity of the published files
//!    (`bench/ort_parity.py`, tract parity was checked at export); full model
//!    size and tract latency within budget.
//! 7. **Publish**: the refit version into the registry, `approved` or
//!    `refused` with the gate's figures and the training window.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use registry::{Pointer, Registry, Status, TrainingWindow};
use serde::Serialize;
use shared::{ModelKind, ModelSet};

use crate::data::InteractionLog;
use crate::evaluate::evaluate_rankings;
use crate::metrics::{K_NDCG, Metrics};
use crate::pipeline::TrainConfig;
use crate::split::{Split, Target};

/// The promotion gate's settings.
#[derive(Debug, Clone)]
pub struct Gate {
    /// Largest tolerated drop of next-window NDCG@20 against the serving
    /// version, relative (0.02: the candidate needs ≥ 98 % of serving's).
    pub max_ndcg_drop: f64,
    /// Largest `full.onnx`, bytes.
    pub max_full_bytes: u64,
    /// Largest p99 of one full-model request through tract on this machine, ms.
    pub max_p99_ms: f64,
    /// Python with onnxruntime for `bench/ort_parity.py` (a checkout with its venv) ...
    pub ort_python: Option<PathBuf>,
    /// The parity script.
    pub ort_parity_script: PathBuf,
    /// ... else the `origin` binary, whose `origin parity` makes the same
    /// check through its own ONNX Runtime (the image: no Python there).
    /// Neither refuses every candidate (parity must be checked, not assumed).
    pub ort_origin: Option<PathBuf>,
}

/// `trainer retrain` settings.
#[derive(Debug, Clone)]
pub struct RetrainConfig {
    /// The event store (`sqlite:PATH` or `postgres://…`).
    pub events: String,
    /// The model registry.
    pub registry: PathBuf,
    /// The pipeline's settings (`out_dir` is replaced by a work directory).
    pub train: TrainConfig,
    /// Held-out window, ms (widened to reach `min_eval_users`).
    pub eval_window_ms: i64,
    /// Fewest shoppers the held-out window must score.
    pub min_eval_users: usize,
    /// The gate.
    pub gate: Gate,
    /// Warm-start the sequence model from the serving version's parameters
    /// (`train.warm_epochs` at most), when the serving version has them.
    pub warm_start: bool,
}

/// One model's figures on the held-out window.
#[derive(Debug, Clone, Serialize)]
pub struct Scored {
    /// Model version.
    pub version: String,
    /// Full-ranking metrics over the window's shoppers (NDCG@20 …).
    pub metrics: Metrics,
}

/// What the gate found; stored in the registry record.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// The published version.
    pub version: String,
    /// Approved (`true`) or refused.
    pub approved: bool,
    /// Every failed check, in words (empty when approved).
    pub reasons: Vec<String>,
    /// The held-out window: first event time (ms), shoppers scored.
    pub window_from_ms: i64,
    /// Shoppers scored in the window.
    pub window_users: usize,
    /// The candidate (trained before the window) on the window.
    pub candidate: Scored,
    /// The serving version on the same window (`None`: the registry's first version).
    pub serving: Option<Scored>,
    /// The end of the serving version's training window, ms, when the registry
    /// knows it (the held-out window starts after it); `None`: unknown (a
    /// version published by hand), so it may have seen the window — a stricter gate.
    pub serving_trained_until_ms: Option<i64>,
    /// `full.onnx` of the published version, bytes.
    pub full_bytes: u64,
    /// p99 of one request through tract, ms.
    pub p99_ms: f64,
    /// onnxruntime parity outcome, in words.
    pub ort_parity: String,
    /// Seconds per stage: load, candidate, judge, refit, gate, publish.
    pub seconds: Vec<(String, f64)>,
}

/// Splits at a time: training = events before `cutoff`; targets = each
/// shopper's distinct items at or after it, for shoppers with events on both
/// sides (items seen before excluded when `exclude_seen`).
pub fn split_at(events: &[crate::data::Event], cutoff: i64, exclude_seen: bool) -> Split {
    let train: Vec<_> = events.iter().filter(|e| e.time < cutoff).copied().collect();
    let mut seen: HashMap<u32, Vec<u32>> = HashMap::new();
    for e in &train {
        seen.entry(e.user).or_default().push(e.item);
    }
    let mut after: std::collections::BTreeMap<u32, Vec<u32>> = std::collections::BTreeMap::new();
    for e in events.iter().filter(|e| e.time >= cutoff) {
        if let Some(before) = seen.get(&e.user)
            && !(exclude_seen && before.contains(&e.item))
        {
            after.entry(e.user).or_default().push(e.item);
        }
    }
    let targets = after.into_iter().map(|(user, items)| Target::new(user, items, |i| seen[&user].contains(&i))).collect();
    Split { train, targets }
}

/// The cutoff of the held-out window: `newest − window`, then moved back so
/// the window holds a quarter more events each time, until at least
/// `min_users` shoppers have events both before and after the cutoff (a
/// shop's quiet day, or a log whose shoppers come in sessions, such as
/// MovieLens's, needs a longer window to judge a model on enough shoppers;
/// counting events, not time, steps over gaps in the log).
///
/// # Errors
/// When no window up to the whole log holds `min_users` such shoppers (the
/// most found is in the message).
pub fn time_split(events: &[crate::data::Event], window_ms: i64, min_users: usize, exclude_seen: bool) -> anyhow::Result<(i64, Split)> {
    let mut times: Vec<i64> = events.iter().map(|e| e.time).collect();
    times.sort_unstable();
    let (&oldest, &newest) = (times.first().context("the store holds no events")?, times.last().expect("not empty"));
    let mut cutoff = newest.saturating_sub(window_ms.max(1)) + 1;
    let mut most = 0;
    loop {
        let split = split_at(events, cutoff, exclude_seen);
        if split.targets.len() >= min_users {
            return Ok((cutoff, split));
        }
        most = most.max(split.targets.len());
        anyhow::ensure!(cutoff > oldest, "no held-out window scores {min_users} shoppers with events on both sides (at most {most}): lower --min-eval-users");
        let in_window = times.len() - times.partition_point(|&t| t < cutoff);
        let grown = (in_window + in_window / 4).max(in_window + 1).min(times.len());
        cutoff = cutoff.min(times[times.len() - grown]);
        if times.len() == grown {
            cutoff = oldest;
        }
    }
}

/// Ranks every target shopper's next items with the full model of `dir`
/// through `shared` (tract), from the shopper's training history (newest
/// [`shared::contract::MAX_HISTORY`]), and scores them.
///
/// # Errors
/// When the directory does not verify or a model run fails.
pub fn score_dir(dir: &Path, log: &InteractionLog, split: &Split, exclude_seen: bool) -> anyhow::Result<(Scored, Vec<f64>)> {
    let set = ModelSet::load_dir(dir, &[ModelKind::Full]).with_context(|| format!("loading {}", dir.display()))?;
    let model = &set.models[0];
    let item_index: HashMap<&str, u32> = log.items.iter().enumerate().map(|(i, id)| (id.as_str(), i as u32)).collect();
    let mut history: HashMap<u32, Vec<(i64, u32)>> = HashMap::new();
    for e in &split.train {
        history.entry(e.user).or_default().push((e.time, e.item));
    }
    let mut rankings: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut latencies = Vec::new();
    for t in &split.targets {
        let mut h = history.remove(&t.user).unwrap_or_default();
        h.sort_by_key(|&(time, _)| time);
        let start = h.len().saturating_sub(shared::contract::MAX_HISTORY);
        let ids: Vec<&str> = h[start..].iter().map(|&(_, i)| log.items[i as usize].as_str()).collect();
        let started = Instant::now();
        let rec = model.recommend(&ids, K_NDCG, exclude_seen)?;
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
        let catalog = model.catalog();
        let ranking = rec.items.iter().filter_map(|&(i, _)| item_index.get(catalog.items()[i].id.as_str()).copied()).collect();
        rankings.insert(t.user, ranking);
    }
    let metrics = evaluate_rankings(&split.targets, log.items.len(), |u| rankings.get(&u).cloned().unwrap_or_default()).metrics;
    latencies.sort_by(f64::total_cmp);
    Ok((Scored { version: set.manifest.version.clone(), metrics }, latencies))
}

fn p99(sorted: &[f64]) -> f64 {
    sorted.get(((sorted.len().max(1) - 1) as f64 * 0.99).round() as usize).copied().unwrap_or(0.0)
}

/// The warm start a model directory offers: its sequence model's parameters,
/// settings and item ids (`None` when it has no sequence model).
///
/// # Errors
/// When the directory's files do not verify or do not fit together.
pub fn warm_start_of(dir: &Path) -> anyhow::Result<Option<crate::sasrec::WarmStart>> {
    let manifest = registry::verify_dir(dir)?;
    let Some(config) = manifest.models.get("full").and_then(|m| m.params.get("sasrec_config")) else { return Ok(None) };
    if !manifest.files.contains_key(crate::sasrec::WARM_START_FILE) {
        return Ok(None);
    }
    let config: crate::sasrec::SasRecConfig = serde_json::from_value(config.clone())?;
    let catalog = shared::Catalog::from_json(&std::fs::read(dir.join("catalog.json"))?)?;
    let n = manifest.models["full"].n_items;
    let ids = catalog.items()[..n].iter().map(|i| i.id.clone()).collect();
    Ok(Some(crate::sasrec::WarmStart::load(&dir.join(crate::sasrec::WARM_START_FILE), config, ids)?))
}

/// Runs `bench/ort_parity.py` (or `origin parity`) on `dir`; `Ok(words)` when it passes.
fn ort_parity(gate: &Gate, dir: &Path) -> Result<String, String> {
    let mut cmd = match (&gate.ort_python, &gate.ort_origin) {
        (Some(python), _) => {
            let mut cmd = std::process::Command::new(python);
            cmd.arg(&gate.ort_parity_script).arg(dir);
            cmd
        }
        (None, Some(origin)) => {
            let mut cmd = std::process::Command::new(origin);
            cmd.arg("parity").arg("--models").arg(dir);
            cmd
        }
        (None, None) => return Err("onnxruntime parity not checked: no Python with onnxruntime (--ort-python) and no origin binary (--ort-origin)".into()),
    };
    let out = cmd.output().map_err(|e| format!("onnxruntime parity: {:?} failed to start: {e}", cmd.get_program()))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() { Ok(text) } else { Err(format!("onnxruntime parity failed: {text} {}", String::from_utf8_lossy(&out.stderr).trim())) }
}

/// Runs one retrain (module docs) and returns the verdict; the version is in
/// the registry either way.
///
/// # Errors
/// When the store, the pipeline or the registry fails (nothing is published then).
pub fn run(cfg: &RetrainConfig) -> anyhow::Result<Verdict> {
    let mut seconds = Vec::new();
    let mut stage = |name: &str, since: Instant| {
        seconds.push((name.to_string(), since.elapsed().as_secs_f64()));
        eprintln!("retrain: {name:<10} {:>7.1} s", since.elapsed().as_secs_f64());
    };
    let t = Instant::now();
    let log = crate::data::load_store(&cfg.events, &crate::data::LogLimits::default())?;
    let exclude_seen = cfg.train.protocol.exclude_seen();
    let (mut cutoff, mut window) = time_split(&log.events, cfg.eval_window_ms, cfg.min_eval_users, exclude_seen)?;
    let reg = Registry::open(&cfg.registry)?;
    let serving_version = reg.pointer(Pointer::Stable)?;
    // A serving version scored on events it learnt from would look better than it is: the
    // window starts after its training window when the registry knows it. When the newest
    // window lies wholly after it, the candidate also learnt from the events in between
    // (what a fresh model is for); when it does not, both learnt from the same events and
    // the comparison checks the recipe, and the refit below adds the new events.
    let serving_until = serving_version.as_deref().and_then(|v| reg.record(v).ok().flatten()).and_then(|r| r.training).map(|t| t.until_ms as i64);
    if let Some(until) = serving_until
        && cutoff <= until
    {
        cutoff = until + 1;
        window = split_at(&log.events, cutoff, exclude_seen);
        anyhow::ensure!(
            window.targets.len() >= cfg.min_eval_users,
            "nothing to judge yet: {} shoppers acted after the serving version {} was trained (need {}): no new version",
            window.targets.len(),
            serving_version.as_deref().unwrap_or_default(),
            cfg.min_eval_users
        );
    }
    let (from_ms, until_ms) = (log.events.iter().map(|e| e.time).min().unwrap_or(0), log.events.iter().map(|e| e.time).max().unwrap_or(0));
    stage("load", t);

    let mut train_cfg = cfg.train.clone();
    if cfg.warm_start
        && let Some(v) = &serving_version
    {
        train_cfg.warm_start = warm_start_of(&reg.version_dir(v))?;
        eprintln!(
            "retrain: warm start from {v}: {}",
            if train_cfg.warm_start.is_some() { "its sequence model's parameters" } else { "it has no sequence model, training from scratch" }
        );
    }
    let work = std::env::temp_dir().join(format!("edgerec-retrain-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let t = Instant::now();
    let mut before = log.clone();
    before.events.retain(|e| e.time < cutoff);
    let eval_cfg = TrainConfig { out_dir: work.join("candidate-before-window"), splits_dir: None, ..train_cfg.clone() };
    crate::train::run(&before, &eval_cfg).context("training the candidate on the events before the window")?;
    stage("candidate", t);

    let t = Instant::now();
    let (candidate, _) = score_dir(&eval_cfg.out_dir, &log, &window, exclude_seen)?;
    let serving = match &serving_version {
        Some(v) => Some(score_dir(&reg.version_dir(v), &log, &window, exclude_seen)?.0),
        None => None,
    };
    stage("judge", t);

    let t = Instant::now();
    let publish_cfg = TrainConfig { out_dir: work.join("published"), splits_dir: None, ..train_cfg.clone() };
    crate::train::run(&log, &publish_cfg).context("refitting on the whole log")?;
    stage("refit", t);

    let t = Instant::now();
    let mut reasons = Vec::new();
    if let Some(s) = &serving {
        let floor = s.metrics.ndcg_at_20 * (1.0 - cfg.gate.max_ndcg_drop);
        if candidate.metrics.ndcg_at_20 < floor {
            reasons.push(format!(
                "next-window NDCG@20 {:.4} is below {:.4} (serving {} has {:.4}, margin {:.0} %)",
                candidate.metrics.ndcg_at_20,
                floor,
                s.version,
                s.metrics.ndcg_at_20,
                100.0 * cfg.gate.max_ndcg_drop
            ));
        }
    }
    let full_bytes = std::fs::metadata(publish_cfg.out_dir.join("full.onnx"))?.len();
    if full_bytes > cfg.gate.max_full_bytes {
        reasons.push(format!("full.onnx is {full_bytes} bytes, the budget {}", cfg.gate.max_full_bytes));
    }
    let (_, latencies) = score_dir(&publish_cfg.out_dir, &log, &window, exclude_seen)?;
    let p99_ms = p99(&latencies);
    if p99_ms > cfg.gate.max_p99_ms {
        reasons.push(format!("p99 of one request through tract is {p99_ms:.1} ms, the budget {} ms", cfg.gate.max_p99_ms));
    }
    let ort = ort_parity(&cfg.gate, &publish_cfg.out_dir);
    if let Err(why) = &ort {
        reasons.push(why.clone());
    }
    stage("gate", t);

    let t = Instant::now();
    let approved = reasons.is_empty();
    let record = reg.publish(&publish_cfg.out_dir, Status::Candidate, "trained from the event store")?;
    let mut verdict = Verdict {
        version: record.version.clone(),
        approved,
        reasons: reasons.clone(),
        window_from_ms: cutoff,
        window_users: window.targets.len(),
        candidate,
        serving,
        serving_trained_until_ms: serving_until,
        full_bytes,
        p99_ms,
        ort_parity: ort.unwrap_or_else(|e| e),
        seconds: Vec::new(),
    };
    let mut record = reg.record(&record.version)?.context("the record just written")?;
    record.training = Some(TrainingWindow { from_ms: from_ms.max(0) as u64, until_ms: until_ms.max(0) as u64, events: log.events.len() as u64 });
    let (status, reason) = if approved {
        let vs = verdict.serving.as_ref().map_or("no version serving yet".to_string(), |s| format!("serving {:.4}", s.metrics.ndcg_at_20));
        (
            Status::Approved,
            format!(
                "gate passed: next-window NDCG@20 {:.4} ({vs}), p99 {p99_ms:.1} ms, {full_bytes} bytes, onnxruntime parity ok",
                verdict.candidate.metrics.ndcg_at_20
            ),
        )
    } else {
        (Status::Refused, format!("gate refused: {}", reasons.join("; ")))
    };
    record.set(status, &reason);
    stage("publish", t);
    verdict.seconds = seconds;
    record.gate = serde_json::to_value(&verdict)?;
    reg.put_record(&record)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(verdict)
}

/// Copies a dataset's log into the store (`trainer import`): one event per
/// interaction whose time lies in `times` (the log's own unit), with a
/// deterministic id (`import-<dataset>-<n>`, `n` its place in the whole log,
/// so a second import, of any part, stores nothing twice), times in ms, and
/// the titles as items.
///
/// # Errors
/// When the store refuses a batch.
pub fn import(log: &InteractionLog, dataset: &str, url: &str, kind: &str, time_to_ms: i64, times: std::ops::Range<i64>) -> anyhow::Result<(usize, usize)> {
    let store = event_store::open(url)?;
    let (mut inserted, mut duplicates) = (0, 0);
    for (chunk_no, chunk) in log.events.chunks(5_000).enumerate() {
        let batch: Vec<shared::events::Event> = chunk
            .iter()
            .enumerate()
            .filter(|(_, e)| times.contains(&e.time))
            .map(|(i, e)| shared::events::Event {
                event_id: format!("import-{dataset}-{}", chunk_no * 5_000 + i),
                user_id: Some(log.users[e.user as usize].clone()),
                session_id: None,
                item_id: log.items[e.item as usize].clone(),
                kind: kind.to_string(),
                time_ms: e.time.saturating_mul(time_to_ms),
                weight: e.weight,
            })
            .collect();
        if batch.is_empty() {
            continue;
        }
        let done = store.append(&batch)?;
        inserted += done.stored;
        duplicates += done.duplicates;
    }
    let items: Vec<shared::events::ItemRecord> = log
        .items
        .iter()
        .zip(&log.titles)
        .filter_map(|(id, title)| title.as_ref().map(|t| (id, t)))
        .map(|(id, t)| serde_json::from_value(serde_json::json!({ "item_id": id, "title": t, "available": true })))
        .collect::<Result<_, _>>()?;
    for chunk in items.chunks(1_000) {
        store.put_items(chunk)?;
    }
    Ok((inserted, duplicates))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Event;

    fn ev(user: u32, item: u32, time: i64) -> Event {
        Event { user, item, time, weight: 1.0 }
    }

    #[test]
    fn the_window_holds_out_the_newest_events_of_shoppers_seen_before() {
        let events = vec![ev(0, 1, 10), ev(0, 2, 20), ev(0, 3, 100), ev(1, 4, 95), ev(2, 5, 10), ev(2, 5, 99), ev(2, 6, 99)];
        let s = split_at(&events, 90, true);
        assert_eq!(s.train.len(), 3);
        // User 1 has nothing before the cutoff; user 2's repeat of item 5 is excluded with exclude_seen.
        assert_eq!(s.targets, vec![Target { user: 0, items: vec![3], repeats: vec![] }, Target { user: 2, items: vec![6], repeats: vec![] }]);
        assert_eq!(split_at(&events, 90, false).targets[1], Target { user: 2, items: vec![5, 6], repeats: vec![5] }, "a repeat is marked");
    }

    #[test]
    fn a_quiet_window_is_widened_until_enough_shoppers_are_scored() {
        // One event per user per "day" (time = day); only user 0 acts on the last day.
        let mut events = Vec::new();
        for user in 0..10 {
            for day in 0..10 {
                events.push(ev(user, day * 10 + user, day as i64));
            }
        }
        events.push(ev(0, 999, 20));
        let (cutoff, split) = time_split(&events, 1, 5, true).unwrap();
        assert!(cutoff <= 9, "widened back into the days everybody acted on: {cutoff}");
        assert!(split.targets.len() >= 5);
        assert!(time_split(&events, 1, 11, true).is_err(), "only 10 shoppers exist");
        // A gap of years before a new shopper's events (an old log imported, a live shop after it).
        events.push(ev(42, 7, 1_000_000));
        let (cutoff, split) = time_split(&events, 1, 5, true).unwrap();
        assert!(cutoff <= 9 && split.targets.len() >= 5, "counting events steps over the gap: {cutoff}");
    }
}
