//! The quality table: ours, baselines and peers per dataset, printed and
//! written to `docs/quality.md`.

use comfy_table::{Table, presets};

use crate::metrics::{BOOTSTRAP_RESAMPLES, paired_bootstrap_ratio};
use crate::pipeline::{Report, ReportRow};

fn row_cells(r: &ReportRow) -> Vec<String> {
    let m = &r.metrics;
    vec![
        r.model.clone(),
        format!("{:.4}", m.recall_at_20),
        format!("{:.4}", m.ndcg_at_20),
        format!("{:.4}", m.hit_rate_at_10),
        format!("{:.3}", m.coverage_at_20),
        if r.fit_seconds > 0.0 { format!("{:.2}", r.fit_seconds) } else { "-".into() },
        r.onnx_bytes.map_or("-".into(), |b| format!("{:.2} MB", b as f64 / 1e6)),
    ]
}

fn table(report: &Report, markdown: bool) -> Table {
    let mut t = Table::new();
    t.load_preset(if markdown { presets::ASCII_MARKDOWN } else { presets::UTF8_FULL_CONDENSED });
    t.set_header(vec!["model", "Recall@20", "NDCG@20", "HitRate@10", "Coverage@20", "fit (s)", "ONNX"]);
    for r in report.rows.iter().chain(&report.peers) {
        t.add_row(row_cells(r));
    }
    t
}

fn row_of<'a>(report: &'a Report, prefix: &str) -> Option<&'a ReportRow> {
    report.rows.iter().find(|r| r.model.starts_with(prefix))
}

/// The paired bootstrap's 95 % interval of `a`'s NDCG@20 over `b`'s, when
/// both rows carry per-user figures for the same users.
fn interval_of(a: &ReportRow, b: &ReportRow) -> Option<(f64, f64)> {
    paired_bootstrap_ratio(&a.per_user_ndcg, &b.per_user_ndcg, BOOTSTRAP_RESAMPLES, 0)
}

/// "95 % CI lo–hi, paired bootstrap over n users", or why there is none.
fn describe_interval(interval: Option<(f64, f64)>, row: &ReportRow) -> String {
    match interval {
        Some((lo, hi)) => format!("95 % CI {lo:.3}–{hi:.3}, paired bootstrap over {} users", row.per_user_ndcg.len()),
        None => "no per-user figures on record: no interval".into(),
    }
}

/// Facts under a dataset's table: sizes, ratio to the full model, peers, time.
fn summary(report: &Report) -> Vec<String> {
    let mut lines = vec![format!(
        "{}: {} users, {} items, {} interactions; protocol: {}; {} evaluated users; full model over {} items.",
        report.dataset,
        report.log_users,
        report.log_items,
        report.log_interactions,
        report.protocol,
        report.rows.first().map_or(0, |r| r.metrics.users),
        report.model_items
    )];
    let served = report.rows.iter().find(|r| r.model.contains("(full, served)"));
    let edge_row = report.rows.iter().find(|r| r.model.ends_with("(edge)"));
    if let (Some(served), Some(edge_row)) = (served, edge_row) {
        let (full, edge) = (served.metrics.ndcg_at_20, edge_row.metrics.ndcg_at_20);
        let size = edge_row.onnx_bytes.unwrap_or(0);
        let best_of =
            |prefix: &str| report.tuning.iter().filter(|(k, _)| k.starts_with(prefix)).max_by(|a, b| a.1.total_cmp(b.1)).map(|(k, v)| format!("{v:.4} ({k})"));
        lines.push(format!(
            "The origin serves {}: validation NDCG@20 of EASE {}, SASRec {}, blend {}, blend with low-rank EASE {}.",
            served.model.replace(" (full, served)", ""),
            best_of("ease").unwrap_or_else(|| "-".into()),
            best_of("sasrec").unwrap_or_else(|| "-".into()),
            best_of("blend").unwrap_or_else(|| "-".into()),
            best_of("low-rank blend").unwrap_or_else(|| "-".into())
        ));
        let edge_interval = interval_of(edge_row, served);
        let verdict = if edge >= 0.9 * full { "meets" } else { "does NOT meet" };
        lines.push(format!(
            "Edge model: {:.2} MB ONNX (budget ≤ 2 MB), NDCG@20 {:.1}% of the served full model's (ratio {}), {verdict} the target of ≥ 90%.",
            size as f64 / 1e6,
            100.0 * edge / full,
            describe_interval(edge_interval, served)
        ));
        // The baseline a shop would otherwise use: personal purchase frequency
        // where repeats count (next-basket), EASE where seen items are excluded.
        let (base, goal) = match row_of(report, "buy again") {
            Some(b) => (b, 1.05),
            None => (row_of(report, "EASE").unwrap_or(served), 1.10),
        };
        let ratio = full / base.metrics.ndcg_at_20;
        let interval = interval_of(served, base);
        let verdict = if ratio >= goal && interval.is_some_and(|(lo, _)| lo > 1.0) { "meets" } else { "does NOT meet" };
        lines.push(format!(
            "Served model vs {}: NDCG@20 {full:.4} / {:.4} = {ratio:.3}× ({}), {verdict} the goal of ≥ {goal:.2}× with an interval above 1.",
            base.model,
            base.metrics.ndcg_at_20,
            describe_interval(interval, served)
        ));
        if row_of(report, "buy again").is_some() {
            let (s, b) = (&served.metrics, &base.metrics);
            lines.push(format!(
                "Repeat and explore parts (hits on items the shopper bought before vs new ones): served {:.4} + {:.4}, {} {:.4} + {:.4}; the gain of {:+.4} is {:+.4} on repeat items and {:+.4} on new items.",
                s.ndcg_at_20_repeat,
                s.ndcg_at_20 - s.ndcg_at_20_repeat,
                base.model,
                b.ndcg_at_20_repeat,
                b.ndcg_at_20 - b.ndcg_at_20_repeat,
                s.ndcg_at_20 - b.ndcg_at_20,
                s.ndcg_at_20_repeat - b.ndcg_at_20_repeat,
                (s.ndcg_at_20 - s.ndcg_at_20_repeat) - (b.ndcg_at_20 - b.ndcg_at_20_repeat)
            ));
        }
        if let Some(best) = report.peers.iter().max_by(|a, b| a.metrics.ndcg_at_20.total_cmp(&b.metrics.ndcg_at_20)) {
            let verdict = if full > best.metrics.ndcg_at_20 { "beats" } else { "does NOT beat" };
            lines.push(format!(
                "Served model NDCG@20 {full:.4} {verdict} the best peer, {} ({:.4}); ratio {:.2}× ({}).",
                best.model,
                best.metrics.ndcg_at_20,
                full / best.metrics.ndcg_at_20,
                describe_interval(interval_of(served, best), served)
            ));
        } else {
            lines.push("Peers: not run (run `cargo xtask peers`).".into());
        }
    }
    lines.push(format!("Whole pipeline (load excluded: tuning, test, refit, export, parity check): {:.1} s.", report.train_seconds));
    lines
}

/// Prints every dataset's table to stdout.
pub fn print(reports: &[Report]) {
    for report in reports {
        println!("\n== {} ==", report.dataset);
        println!("{}", table(report, false));
        for line in summary(report) {
            println!("  {line}");
        }
    }
}

/// The markdown body of `docs/quality.md`.
pub fn markdown(reports: &[Report], date: &str) -> String {
    let mut out = String::new();
    out.push_str("# Recommendation quality\n\n");
    out.push_str(&format!("Generated {date} by `cargo xtask demo` (which runs `cargo run -p trainer -- train …`, `bench/peers.py`, `cargo run -p trainer -- eval-peers …` and `cargo run -p trainer -- report --write-docs docs/quality.md`) on the project's 2-core machine.\n\n"));
    out.push_str("Full-ranking evaluation (every item ranked for every user; Krichene & Rendle, KDD 2020). ");
    out.push_str("Hyper-parameters of ours and of the peers are chosen on a validation split carved from the training part by the same protocol; the test split is scored once. ");
    out.push_str("Recall@K = hits / min(K, |test|); NDCG@K with binary gains; Coverage@20 = distinct items in all top-20 lists / items in the log. ");
    out.push_str("`fit (s)` is the final fit on the training split (tuning excluded; for SASRec the tuned model continued for 3 epochs on the test split's training part, as the exported one continues for 3 more on the whole log, on this machine's 2 CPU cores); peers are `implicit` (PyPI) ALS and BPR on exactly the same splits, scored by the same Rust metric code. ");
    out.push_str("The origin serves the full model marked `(full, served)`: of EASE, SASRec, their blend and SASRec blended with a low-rank EASE (at the edge ranks that fit the edge budget and at 64/128/256), the one with the best validation NDCG@20 (the test scores below played no part in the choice); when that is dense EASE or the dense blend, the smallest rank whose validation NDCG@20 is within 0.5 % of it serves in its place, so the file's size follows what the model needs. `ONNX` is the exported file's size (the served full model and the edge model). ");
    out.push_str("EASE's input is the shopper's history with the k-th newest entry weighted rᵏ (the time-decayed purchase frequency of TIFU-KNN, Hu et al., SIGIR 2020, over history positions rather than baskets, since that is what a request carries; `decay` r = 1 is plain counts), with r, λ and the buy-again weight β tuned on validation; the decay is part of every exported graph. ");
    out.push_str("The edge model (marked `(edge)`) is low-rank EASE over the most popular items (with `--edge-sequence`, the served SASRec plus a low-rank EASE over every item when it fits the 2 MB budget and is better on validation). ");
    out.push_str("Every served-vs-baseline ratio carries a 95 % paired bootstrap interval over the evaluated users (2,000 resamples, seeded); a goal is met only when the point estimate reaches it and the interval excludes 1. Repeat and explore parts split NDCG@20 into hits on items the shopper bought before and on new ones (next-basket protocol).\n");
    let total: f64 = reports.iter().map(|r| r.train_seconds).sum();
    out.push_str(&format!(
        "\nFull training of all {} datasets above, tuning included: {:.0} s ({:.1} min; goal for the two bundled datasets ≤ 15 min on this 2-core machine).\n",
        reports.len(),
        total,
        total / 60.0
    ));
    for report in reports {
        out.push_str(&format!("\n## {}\n\n{}\n\n", report.dataset, table(report, true)));
        for line in summary(report) {
            out.push_str(&format!("- {line}\n"));
        }
    }
    out
}
