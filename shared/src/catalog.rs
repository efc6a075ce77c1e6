//! The item catalog: model index ↔ the shop's external item id, with titles
//! and popularity.
//!
//! `catalog.json` lists items in model-index order, most popular first, so the
//! edge model (which covers the `n` most popular items) indexes a prefix of it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// One catalog entry; its position in [`Catalog::items`] is its model index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogItem {
    /// The shop's item id (string, as in the interaction log).
    pub id: String,
    /// Human-readable title, when the log has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Interactions with this item in the training log (count).
    pub popularity: u64,
}

/// The catalog with its id → index lookup.
#[derive(Debug, Clone)]
pub struct Catalog {
    items: Vec<CatalogItem>,
    by_id: HashMap<String, usize>,
}

#[derive(Serialize, Deserialize)]
struct CatalogFile {
    items: Vec<CatalogItem>,
}

/// A request history mapped to model indices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResolvedHistory {
    /// Model indices of the known items, in request order (duplicates kept).
    pub indices: Vec<usize>,
    /// Ids not in the catalog, in request order, each once.
    pub unknown: Vec<String>,
}

/// Why a catalog was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Not JSON of the expected shape.
    #[error("catalog.json is malformed: {0}")]
    Malformed(#[from] serde_json::Error),
    /// Two entries share an id.
    #[error("catalog.json lists item id {0:?} twice")]
    DuplicateId(String),
}

impl Catalog {
    /// Builds a catalog from items in model-index order.
    ///
    /// # Errors
    /// [`CatalogError::DuplicateId`] if an id repeats.
    pub fn new(items: Vec<CatalogItem>) -> Result<Self, CatalogError> {
        let mut by_id = HashMap::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            if by_id.insert(item.id.clone(), index).is_some() {
                return Err(CatalogError::DuplicateId(item.id.clone()));
            }
        }
        Ok(Catalog { items, by_id })
    }

    /// Parses `catalog.json` (`{"items": [{"id", "title"?, "popularity"}]}`).
    ///
    /// # Errors
    /// [`CatalogError`] on malformed JSON or duplicate ids.
    pub fn from_json(bytes: &[u8]) -> Result<Self, CatalogError> {
        let file: CatalogFile = serde_json::from_slice(bytes)?;
        Catalog::new(file.items)
    }

    /// Serializes to the `catalog.json` format.
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Borrowed<'a> {
            items: &'a [CatalogItem],
        }
        serde_json::to_vec(&Borrowed { items: &self.items }).expect("catalog serializes")
    }

    /// Number of items (model indices are `0..len()`).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when the catalog has no items.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// All items in index order.
    pub fn items(&self) -> &[CatalogItem] {
        &self.items
    }

    /// `(id, title)` best first: the catalog is ordered by popularity, so its
    /// index order is the popular list (the live catalog fills `k` from it).
    pub fn popular_order(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.items.iter().map(|i| (i.id.as_str(), i.title.as_deref()))
    }

    /// The item at model index `index`, if any.
    pub fn get(&self, index: usize) -> Option<&CatalogItem> {
        self.items.get(index)
    }

    /// Model index of external id `id`.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    /// Maps external ids to indices; unknown ids are collected, never fatal.
    pub fn resolve<S: AsRef<str>>(&self, ids: &[S]) -> ResolvedHistory {
        let mut out = ResolvedHistory::default();
        for id in ids {
            let id = id.as_ref();
            match self.index_of(id) {
                Some(i) => out.indices.push(i),
                None if !out.unknown.iter().any(|u| u == id) => out.unknown.push(id.to_string()),
                None => {}
            }
        }
        out
    }

    /// A readable name for the item at `index`: its title, else `"Item <id>"`.
    pub fn display_name(&self, index: usize) -> String {
        match self.items.get(index) {
            Some(CatalogItem { title: Some(t), .. }) => t.clone(),
            Some(item) => format!("Item {}", item.id),
            None => format!("#{index}"),
        }
    }
}

/// Name of the file with every catalog id's fingerprint ([`CatalogIds`]).
pub const CATALOG_IDS_FILE: &str = "catalog_ids.bin";
/// Name of the head of the catalog the edge worker embeds: the items its
/// model scores, with titles ([`edge_catalog_items`]).
pub const EDGE_CATALOG_FILE: &str = "edge_catalog.json";
/// The edge catalog holds at least this many items (all of a smaller
/// catalog), so the shop page lists a real catalog; more when the edge model
/// scores more. At ~60 bytes per item in memory it stays under 4 MB.
pub const EDGE_CATALOG_MIN_ITEMS: usize = 50_000;

/// Items of the edge catalog for a catalog of `catalog_items` whose edge model scores `edge_items`.
pub fn edge_catalog_items(catalog_items: usize, edge_items: usize) -> usize {
    catalog_items.min(edge_items.max(EDGE_CATALOG_MIN_ITEMS))
}

/// Fingerprint of an item id: the first 8 bytes of its sha256 (FIPS 180-4),
/// big-endian. Finding an id that collides with one of `n` catalog ids takes
/// about `2⁶⁴ / n` hashes (2⁴⁴ at 10⁶ items), so junk ids cannot pass for
/// catalog ids by accident or cheaply by design.
pub fn fingerprint(id: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(id.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("sha256 has 32 bytes"))
}

/// Every catalog id, as a sorted set of fingerprints (`catalog_ids.bin`:
/// little-endian `u64`s, ascending, 8 bytes per item): what the edge knows of
/// a catalog too large to embed with titles (8 MB at 10⁶ items, where
/// `catalog.json` takes ~40 MB and several times that in memory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogIds {
    sorted: Vec<u64>,
}

/// Why `catalog_ids.bin` was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogIdsError {
    /// The length is not a multiple of 8 bytes.
    #[error("catalog_ids.bin has {0} bytes, not a multiple of 8")]
    Length(usize),
    /// Fingerprints are not strictly ascending (unsorted, or two ids collide).
    #[error("catalog_ids.bin is not strictly ascending at entry {0}")]
    Order(usize),
}

impl CatalogIds {
    /// The fingerprints of `ids` (any order).
    pub fn of<S: AsRef<str>>(ids: impl IntoIterator<Item = S>) -> Self {
        let mut sorted: Vec<u64> = ids.into_iter().map(|id| fingerprint(id.as_ref())).collect();
        sorted.sort_unstable();
        sorted.dedup();
        CatalogIds { sorted }
    }

    /// Parses `catalog_ids.bin`.
    ///
    /// # Errors
    /// [`CatalogIdsError`] on a ragged length or entries out of order.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CatalogIdsError> {
        if !bytes.len().is_multiple_of(8) {
            return Err(CatalogIdsError::Length(bytes.len()));
        }
        let sorted: Vec<u64> = bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8-byte chunk"))).collect();
        if let Some(i) = sorted.windows(2).position(|w| w[0] >= w[1]) {
            return Err(CatalogIdsError::Order(i + 1));
        }
        Ok(CatalogIds { sorted })
    }

    /// The `catalog_ids.bin` bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.sorted.iter().flat_map(|f| f.to_le_bytes()).collect()
    }

    /// Whether `id` is in the catalog (false positives: ~`len / 2⁶⁴`).
    pub fn contains(&self, id: &str) -> bool {
        self.sorted.binary_search(&fingerprint(id)).is_ok()
    }

    /// Items in the catalog.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// True when the catalog has no items.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_ids_know_every_id_and_nothing_else_and_refuse_bad_files() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("i{i}")).collect();
        let set = CatalogIds::of(&ids);
        assert_eq!(set.len(), 10_000);
        let back = CatalogIds::from_bytes(&set.to_bytes()).unwrap();
        assert_eq!(back, set);
        assert!(ids.iter().all(|id| back.contains(id)));
        assert!((10_000..20_000).all(|i| !back.contains(&format!("i{i}"))));
        assert!(matches!(CatalogIds::from_bytes(&[0u8; 9]), Err(CatalogIdsError::Length(9))));
        let mut swapped = set.to_bytes();
        swapped[..16].rotate_left(8);
        assert!(matches!(CatalogIds::from_bytes(&swapped), Err(CatalogIdsError::Order(1))));
        assert_eq!(edge_catalog_items(1_682, 1_682), 1_682);
        assert_eq!(edge_catalog_items(1_000_000, 7_804), EDGE_CATALOG_MIN_ITEMS);
        assert_eq!(edge_catalog_items(1_000_000, 80_000), 80_000);
    }

    fn item(id: &str, title: Option<&str>, popularity: u64) -> CatalogItem {
        CatalogItem { id: id.into(), title: title.map(Into::into), popularity }
    }

    #[test]
    fn resolve_keeps_order_and_reports_unknown_ids_once() {
        let c = Catalog::new(vec![item("a", Some("A"), 3), item("b", None, 1)]).unwrap();
        let r = c.resolve(&["b", "zz", "a", "zz", "b"]);
        assert_eq!(r.indices, vec![1, 0, 1]);
        assert_eq!(r.unknown, vec!["zz".to_string()]);
        assert_eq!(c.display_name(0), "A");
        assert_eq!(c.display_name(1), "Item b");
    }

    #[test]
    fn json_round_trip_and_duplicate_ids_refused() {
        let c = Catalog::new(vec![item("a", Some("A"), 3), item("b", None, 1)]).unwrap();
        let back = Catalog::from_json(&c.to_json()).unwrap();
        assert_eq!(back.items(), c.items());
        let dup = br#"{"items":[{"id":"a","popularity":1},{"id":"a","popularity":2}]}"#;
        assert!(matches!(Catalog::from_json(dup), Err(CatalogError::DuplicateId(_))));
    }
}
