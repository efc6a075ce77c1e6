//! A synthetic interaction log with the shape of a real shop, for the scale
//! benchmark (`cargo xtask bench-scale`, `docs/scale.md`): catalogs of 10⁴ to
//! 10⁶ items and up to 10⁷ events, deterministic from a seed, written in the
//! generic CSV format (`user,item,time`, see [`crate::data`]).
//!
//! The generative story, chosen so that both kinds of model have something
//! real to learn and the quality figures mean something:
//!
//! * **Popularity** is Zipf-distributed: the item of popularity rank `r`
//!   (0-based) has weight `1 / (r + 1)^s`, `s = 0.9` (product and page views
//!   in shops follow power laws with exponents near 1; Goel et al., "Anatomy
//!   of the Long Tail", WSDM 2010).
//! * **Tastes.** Items belong to one of `n / 200` topics (a shop's
//!   categories); each user likes one to three topics, drawn in proportion to
//!   their popularity, and draws items within them by popularity —
//!   co-occurrence structure, what EASE reads.
//! * **Sequences.** Each topic orders its items into a chain (series,
//!   accessories, refills); after an item the user takes its successor in the
//!   chain (or the one after) with probability 0.5 — order structure, what
//!   SASRec reads and a bag of items cannot.
//! * The remaining steps are 40 % a fresh item from the user's topics and
//!   10 % an item from the whole catalog by popularity (noise).
//!
//! Users have at least 5 events (so every split protocol has something to
//! hold out) and 50 on average (geometric lengths); users are added until the
//! log has the requested number of events.

use std::io::Write;
use std::path::Path;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::weighted::Cumulative;

/// Size and seed of a synthetic log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShopShape {
    /// Catalog size (items that can appear; the rarest may never be drawn).
    pub items: usize,
    /// Interactions (CSV rows) to write.
    pub events: usize,
    /// Seed of every random choice.
    pub seed: u64,
}

/// Zipf exponent of item popularity.
pub const ZIPF_EXPONENT: f64 = 0.9;
/// Mean items per topic.
pub const ITEMS_PER_TOPIC: usize = 200;
/// Mean events per user.
pub const MEAN_EVENTS_PER_USER: usize = 50;
/// Fewest events per user.
pub const MIN_EVENTS_PER_USER: usize = 5;
/// Probability that the next item is the previous one's successor in its topic chain.
pub const P_SUCCESSOR: f64 = 0.5;
/// Probability that the next item is a fresh draw from the user's topics (else: the whole catalog).
pub const P_TOPIC: f64 = 0.4;

/// Why a log cannot be generated.
#[derive(Debug, thiserror::Error)]
pub enum SyntheticError {
    /// The requested shape is impossible.
    #[error("synthetic log: {0}")]
    Shape(String),
    /// Writing the CSV failed.
    #[error("writing {path}: {source}")]
    Io {
        /// File being written.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The catalog's structure: popularity, topics and their chains.
struct Shop {
    /// Popularity weight per item index (index = popularity rank).
    global: Cumulative,
    /// Topic of each item.
    topic_of: Vec<u32>,
    /// Items of each topic, in chain order (concatenated; see `topic_start`).
    chain: Vec<u32>,
    /// Position of each item in `chain`.
    chain_pos: Vec<u32>,
    /// `chain[topic_start[t]..topic_start[t + 1]]` are topic `t`'s items.
    topic_start: Vec<usize>,
    /// Per topic: cumulative popularity of its chain items, for drawing within it.
    topic_draw: Vec<Cumulative>,
    /// Draws a topic by its total popularity.
    topics: Cumulative,
    /// External id of each item index (a shuffled numbering, so ids say nothing about popularity).
    external: Vec<u32>,
}

impl Shop {
    fn new(items: usize, rng: &mut StdRng) -> Self {
        let weight = |r: usize| 1.0 / ((r + 1) as f64).powf(ZIPF_EXPONENT);
        let n_topics = items.div_ceil(ITEMS_PER_TOPIC).max(1);
        let topic_of: Vec<u32> = (0..items).map(|_| rng.random_range(0..n_topics as u32)).collect();
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); n_topics];
        for (i, &t) in topic_of.iter().enumerate() {
            members[t as usize].push(i as u32);
        }
        let (mut chain, mut topic_start, mut topic_draw) = (Vec::with_capacity(items), vec![0], Vec::with_capacity(n_topics));
        for m in &mut members {
            m.shuffle(rng);
            topic_draw.push(Cumulative::new(m.iter().map(|&i| weight(i as usize))));
            chain.extend_from_slice(m);
            topic_start.push(chain.len());
        }
        let mut chain_pos = vec![0u32; items];
        for (p, &i) in chain.iter().enumerate() {
            chain_pos[i as usize] = p as u32;
        }
        let topics = Cumulative::new(topic_draw.iter().map(Cumulative::total));
        let mut external: Vec<u32> = (0..items as u32).collect();
        external.shuffle(rng);
        Shop { global: Cumulative::new((0..items).map(weight)), topic_of, chain, chain_pos, topic_start, topic_draw, topics, external }
    }

    fn draw_in_topic(&self, t: usize, rng: &mut StdRng) -> u32 {
        if self.topic_draw[t].is_empty() {
            return self.global.draw(rng) as u32;
        }
        self.chain[self.topic_start[t] + self.topic_draw[t].draw(rng)]
    }

    /// The item one or two steps after `item` in its topic's chain, if any.
    fn successor(&self, item: u32, rng: &mut StdRng) -> Option<u32> {
        let t = self.topic_of[item as usize] as usize;
        let next = self.chain_pos[item as usize] as usize + if rng.random::<f64>() < 0.7 { 1 } else { 2 };
        (next < self.topic_start[t + 1]).then(|| self.chain[next])
    }
}

/// Writes a synthetic log of `shape` to `out` as CSV (`user,item,time`);
/// returns the number of users.
///
/// # Errors
/// [`SyntheticError::Shape`] for an empty catalog or fewer events than one
/// user needs; [`SyntheticError::Io`] when the file cannot be written.
pub fn write_csv(shape: ShopShape, out: &Path) -> Result<usize, SyntheticError> {
    let ShopShape { items, events, seed } = shape;
    if items < 2 || events < MIN_EVENTS_PER_USER {
        return Err(SyntheticError::Shape(format!("{items} items and {events} events: need at least 2 items and {MIN_EVENTS_PER_USER} events")));
    }
    if items > u32::MAX as usize {
        return Err(SyntheticError::Shape(format!("{items} items: at most {} are supported", u32::MAX)));
    }
    let io = |source| SyntheticError::Io { path: out.display().to_string(), source };
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(out).map_err(io)?);
    writeln!(w, "user,item,time").map_err(io)?;
    let mut rng = StdRng::seed_from_u64(seed);
    let shop = Shop::new(items, &mut rng);
    let (mut written, mut users) = (0usize, 0usize);
    // Geometric lengths above the minimum with the requested mean.
    let p_stop = 1.0 / (MEAN_EVENTS_PER_USER - MIN_EVENTS_PER_USER + 1) as f64;
    while written < events {
        let mut len = MIN_EVENTS_PER_USER;
        while rng.random::<f64>() >= p_stop {
            len += 1;
        }
        let len = len.min(events - written).max(MIN_EVENTS_PER_USER.min(events - written));
        let tastes: Vec<usize> = (0..rng.random_range(1..=3)).map(|_| shop.topics.draw(&mut rng)).collect();
        let mut previous: Option<u32> = None;
        let user_start = users as u64 * 10_000;
        for step in 0..len {
            let roll = rng.random::<f64>();
            let item = match previous.and_then(|p| (roll < P_SUCCESSOR).then(|| shop.successor(p, &mut rng)).flatten()) {
                Some(next) => next,
                None if roll < P_SUCCESSOR + P_TOPIC => shop.draw_in_topic(tastes[rng.random_range(0..tastes.len())], &mut rng),
                None => shop.global.draw(&mut rng) as u32,
            };
            writeln!(w, "u{users},i{},{}", shop.external[item as usize], user_start + step as u64).map_err(io)?;
            previous = Some(item);
        }
        written += len;
        users += 1;
    }
    w.flush().map_err(io)?;
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CSV text and the log the trainer reads from it.
    fn generate(shape: ShopShape, name: &str) -> (String, crate::data::InteractionLog) {
        let path = std::env::temp_dir().join(format!("edgerec-synthetic-{}-{name}.csv", std::process::id()));
        write_csv(shape, &path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let log = crate::data::load_csv(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        (text, log)
    }

    #[test]
    fn same_seed_same_log_and_the_requested_size() {
        let shape = ShopShape { items: 2_000, events: 20_000, seed: 7 };
        let (a, log) = generate(shape, "a");
        assert_eq!(a, generate(shape, "b").0);
        assert_ne!(a, generate(ShopShape { seed: 8, ..shape }, "c").0);
        assert_eq!(a.lines().count(), 1 + 20_000);
        assert_eq!(log.events.len(), 20_000);
        // Every user has the minimum history.
        let mut per_user = vec![0usize; log.users.len()];
        for e in &log.events {
            per_user[e.user as usize] += 1;
        }
        assert!(per_user.iter().all(|&c| c >= MIN_EVENTS_PER_USER), "{:?}", per_user.iter().min());
    }

    #[test]
    fn popularity_is_heavy_tailed_and_successors_follow_each_other() {
        let (_, log) = generate(ShopShape { items: 5_000, events: 100_000, seed: 1 }, "shape");
        let mut counts = vec![0u64; log.items.len()];
        for e in &log.events {
            counts[e.item as usize] += 1;
        }
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top: u64 = counts.iter().take(counts.len() / 100).sum();
        // Zipf(0.9) over 5,000 items puts ~20 % of the mass on the top 1 %; uniform would put 1 %.
        assert!(top as f64 / log.events.len() as f64 > 0.12, "top 1% share {}", top as f64 / log.events.len() as f64);
        // Order structure: the most frequent successor of an item follows it far more often than chance.
        let mut next: std::collections::HashMap<(u32, u32), u32> = std::collections::HashMap::new();
        for w in log.events.windows(2) {
            if w[0].user == w[1].user {
                *next.entry((w[0].item, w[1].item)).or_default() += 1;
            }
        }
        let repeated = next.values().filter(|&&c| c >= 3).count();
        assert!(repeated > 1_000, "only {repeated} item pairs follow each other 3+ times");
    }

    #[test]
    fn impossible_shapes_are_refused() {
        let path = std::env::temp_dir().join("edgerec-never-written.csv");
        assert!(matches!(write_csv(ShopShape { items: 1, events: 100, seed: 0 }, &path), Err(SyntheticError::Shape(_))));
        assert!(matches!(write_csv(ShopShape { items: 100, events: 2, seed: 0 }, &path), Err(SyntheticError::Shape(_))));
    }
}
