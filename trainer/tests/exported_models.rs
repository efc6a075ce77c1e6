//! The real exported models under `models/` (written by `cargo xtask train`,
//! which `cargo xtask test` runs first): they verify against their manifests,
//! tract reproduces the trainer's own scores for 100 test users, and the edge
//! model meets its size and quality targets.

use std::path::PathBuf;

use shared::{ModelKind, ModelSet};
use trainer::artifacts::{ParityFile, check_parity};

const DATASETS: [&str; 2] = ["movielens", "instacart"];
/// Edge ONNX budget (bytes).
const EDGE_BUDGET: u64 = 2_000_000;

fn model_dir(dataset: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models").join(dataset);
    assert!(dir.join("manifest.json").exists(), "{} has no models: run `cargo xtask test` (it trains first)", dir.display());
    dir
}

#[test]
fn tract_matches_the_trainer_for_100_test_users() {
    for dataset in DATASETS {
        let dir = model_dir(dataset);
        let set = ModelSet::load_dir(&dir, &[ModelKind::Full, ModelKind::Edge]).unwrap();
        let parity: ParityFile = serde_json::from_slice(&std::fs::read(dir.join("parity.json")).unwrap()).unwrap();
        assert_eq!(parity.cases.len(), 100, "{dataset}: parity needs 100 test users");
        for (kind, rec) in [ModelKind::Full, ModelKind::Edge].into_iter().zip(&set.models) {
            // Fails on any score outside the tolerance parity.json records for this kind.
            check_parity(kind, rec.model(), rec.catalog(), &parity).unwrap();
            assert!(parity.tolerance.get(kind.as_str()).is_some_and(|&t| t <= 1e-3), "{dataset} {kind:?}: parity tolerance missing or loose");
        }
    }
}

#[test]
fn edge_model_meets_size_and_quality_targets() {
    for dataset in DATASETS {
        let set = ModelSet::load_dir(&model_dir(dataset), &[]).unwrap();
        let edge = &set.manifest.files["edge.onnx"];
        assert!(edge.bytes <= EDGE_BUDGET, "{dataset}: edge.onnx is {} bytes", edge.bytes);
        // The low-rank edge model approximates EASE: it keeps ≥ 90 % of EASE's
        // NDCG@20. (Its share of the served model's, `edge_ndcg_ratio`, is in the
        // quality table; with SASRec served on MovieLens it is below 90 %.)
        let edge_ndcg = set.manifest.metrics["edge"]["ndcg_at_20"].as_f64().unwrap();
        let ease = set.manifest.metrics["ease"]["ndcg_at_20"].as_f64().unwrap();
        assert!(edge_ndcg >= 0.9 * ease, "{dataset}: edge keeps only {:.1}% of EASE's NDCG@20", 100.0 * edge_ndcg / ease);
        let full = set.manifest.metrics["full"]["ndcg_at_20"].as_f64().unwrap();
        assert!(full > 0.1, "{dataset}: full model NDCG@20 {full} is implausibly low");
    }
}

#[test]
fn real_queries_answer_with_titles_and_report_unknown_ids() {
    let set = ModelSet::load_dir(&model_dir("movielens"), &[ModelKind::Full]).unwrap();
    let rec = &set.models[0];
    // 50 = Star Wars (1977), 172 = The Empire Strikes Back (1980), 181 = Return of the Jedi (1997).
    let r = rec.recommend(&["50", "172", "not-a-movie"], 10, true).unwrap();
    assert_eq!(r.items.len(), 10);
    assert_eq!(r.unknown, vec!["not-a-movie".to_string()]);
    let titles: Vec<String> = r.items.iter().map(|&(i, _)| rec.catalog().display_name(i)).collect();
    assert!(!titles.iter().any(|t| t.starts_with("Star Wars") || t.starts_with("Empire")), "seen items excluded: {titles:?}");
    assert!(titles.iter().any(|t| t.starts_with("Return of the Jedi")), "a Star Wars fan gets the third film: {titles:?}");
}
