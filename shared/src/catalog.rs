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

#[cfg(test)]
mod tests {
    use super::*;

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
