//! `shared::Recommender` on small hand-made models: exclusion, exact k,
//! unknown ids, popular fallback, edge coverage.

use shared::{Catalog, CatalogItem, Recommender};
use trainer::onnx_export::{DenseF32, full_model, low_rank_model};

fn catalog(n: usize) -> Catalog {
    let items = (0..n).map(|i| CatalogItem { id: format!("item{i}"), title: Some(format!("Title {i}")), popularity: (100 - i) as u64 }).collect();
    Catalog::new(items).unwrap()
}

/// B[i][j] = 1 / (1 + |i − j|) off the diagonal: neighbours score highest.
fn neighbour_model(n: usize) -> Vec<u8> {
    let mut data = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            if i != j {
                data[i * n + j] = 1.0 / (1.0 + (i as f32 - j as f32).abs());
            }
        }
    }
    full_model(&DenseF32 { rows: n, cols: n, data }, 1.0)
}

fn ids(r: &shared::Recommendation) -> Vec<usize> {
    r.items.iter().map(|&(i, _)| i).collect()
}

#[test]
fn exclude_seen_still_returns_exactly_k() {
    let rec = Recommender::from_bytes(catalog(8), &neighbour_model(8)).unwrap();
    let r = rec.recommend(&["item3", "item4"], 5, true).unwrap();
    assert_eq!(r.items.len(), 5);
    assert!(!ids(&r).contains(&3) && !ids(&r).contains(&4));
    assert_eq!(ids(&r)[..2].iter().copied().collect::<std::collections::BTreeSet<_>>(), [2, 5].into(), "neighbours first");
    assert!(r.items.windows(2).all(|w| w[0].1 >= w[1].1), "scores descend");
    assert!(!r.popular_fallback);
    // Seen items allowed: they rank by their scores (item 3 = B[4][3] = 0.5, below
    // items 2/5 at 0.83 and 1/6 at 0.58).
    let r = rec.recommend(&["item3", "item4"], 6, false).unwrap();
    assert!(ids(&r).contains(&3) && ids(&r).contains(&4));
}

#[test]
fn unknown_ids_are_reported_and_ignored() {
    let rec = Recommender::from_bytes(catalog(6), &neighbour_model(6)).unwrap();
    let r = rec.recommend(&["nope", "item0", "nope", "-1"], 3, true).unwrap();
    assert_eq!(r.unknown, vec!["nope".to_string(), "-1".to_string()]);
    assert_eq!(ids(&r)[0], 1);
}

#[test]
fn no_known_item_gets_the_popular_list() {
    let rec = Recommender::from_bytes(catalog(6), &neighbour_model(6)).unwrap();
    let r = rec.recommend(&["nope"], 3, true).unwrap();
    assert!(r.popular_fallback);
    assert_eq!(ids(&r), vec![0, 1, 2]);
    let r = rec.recommend::<&str>(&[], 4, true).unwrap();
    assert_eq!(ids(&r), vec![0, 1, 2, 3]);
}

#[test]
fn k_is_capped_by_what_the_catalog_has() {
    let rec = Recommender::from_bytes(catalog(4), &neighbour_model(4)).unwrap();
    let r = rec.recommend(&["item0"], 10, true).unwrap();
    assert_eq!(ids(&r).len(), 3, "4 items, one seen");
    let r = rec.recommend(&["item0", "item1", "item2", "item3"], 2, true).unwrap();
    assert!(r.items.is_empty(), "everything seen: nothing left to recommend");
}

#[test]
fn edge_model_covers_a_prefix_and_fills_from_popular() {
    // Edge model over the 3 most popular of 6 items: rank-1, every item scores its index + 1.
    let p = DenseF32 { rows: 3, cols: 1, data: vec![1.0; 3] };
    let q = DenseF32 { rows: 1, cols: 3, data: vec![1.0, 2.0, 3.0] };
    let rec = Recommender::from_bytes(catalog(6), &low_rank_model(shared::ModelKind::Edge, &p, &q, 0.0, 1.0)).unwrap();
    // item5 is known but outside the edge model: it is not sent to the model (no out-of-range index).
    let prepared = rec.prepare(&["item5", "item0"]);
    assert_eq!((prepared.row.clone(), prepared.uncovered), (vec![(0, 1.0)], 1));
    let r = rec.recommend(&["item5", "item0"], 4, true).unwrap();
    assert_eq!(ids(&r), vec![2, 1, 3, 4], "model ranks 2 > 1, popular fills 3, 4; seen 0 and 5 excluded");
    // Only uncovered items: the model has nothing to go on, the popular list answers.
    let r = rec.recommend(&["item5"], 2, true).unwrap();
    assert!(r.popular_fallback);
    assert_eq!(ids(&r), vec![0, 1]);
}

#[test]
fn model_larger_than_catalog_is_refused() {
    assert!(Recommender::from_bytes(catalog(3), &neighbour_model(4)).is_err());
}
