//! `trainer query`: real queries through `shared` (tract), as the servers run them.

use std::path::Path;

use anyhow::Context;
use shared::{ModelKind, ModelSet};

use crate::artifacts::ParityFile;

/// Prints, for the first `users` test users of `parity.json`, their recent
/// items and both models' top-10 with titles.
///
/// # Errors
/// If the directory fails verification or a model run fails.
pub fn run(dir: &Path, users: usize) -> anyhow::Result<()> {
    let set = ModelSet::load_dir(dir, &[ModelKind::Full, ModelKind::Edge]).with_context(|| format!("loading {}", dir.display()))?;
    let parity: ParityFile = serde_json::from_slice(&std::fs::read(dir.join("parity.json"))?)?;
    let exclude_seen = !set.manifest.repeat_purchases;
    println!("\n== {} (model {}, exclude_seen={exclude_seen}) — answered through shared/tract ==", set.manifest.dataset, set.manifest.version);
    for case in parity.cases.iter().take(users) {
        let full = &set.models[0];
        let catalog = full.catalog();
        let recent: Vec<String> = case.history.iter().rev().take(5).map(|id| catalog.index_of(id).map_or(id.clone(), |i| catalog.display_name(i))).collect();
        println!("\nuser {} — {} items in history; most recent: {}", case.user, case.history.len(), recent.join(" | "));
        let answers: Vec<_> = set.models.iter().map(|m| m.recommend(&case.history, 10, exclude_seen)).collect::<Result<_, _>>()?;
        println!("  {:<4}{:<52}edge model (worker)", "#", "full model (origin)");
        for rank in 0..10 {
            let name = |a: &shared::Recommendation| a.items.get(rank).map_or(String::new(), |&(i, _)| truncate(&catalog.display_name(i), 48));
            println!("  {:<4}{:<52}{}", rank + 1, name(&answers[0]), name(&answers[1]));
        }
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { s.chars().take(n - 1).collect::<String>() + "…" }
}
