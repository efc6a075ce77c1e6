//! Evaluation protocols: how a log is cut into training events and held-out
//! targets. Both are "leave-the-future-out" per user, so no model sees a
//! user's future while being scored on it.

use std::collections::BTreeMap;

use crate::data::Event;

/// How a user's events are held out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Protocol {
    /// The chronologically last `fraction` of each user's events (at least one,
    /// at least one left for training). Items seen in training are excluded
    /// from the ranking (MovieLens).
    LastFraction {
        /// Share of events held out, e.g. 0.2.
        fraction: f64,
    },
    /// Each user's last basket (all events at the user's largest `time`).
    /// Repeat purchases count, so seen items stay rankable (Instacart).
    LastBasket,
}

impl Protocol {
    /// Whether items from the user's training events are removed from rankings.
    pub fn exclude_seen(self) -> bool {
        matches!(self, Protocol::LastFraction { .. })
    }

    /// Short name for reports.
    pub fn describe(self) -> String {
        match self {
            Protocol::LastFraction { fraction } => format!("last {:.0}% of each user's events, seen items excluded", fraction * 100.0),
            Protocol::LastBasket => "each user's last basket, repeat purchases count".to_string(),
        }
    }
}

/// Held-out items of one user.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Log user index.
    pub user: u32,
    /// Distinct log item indices, ascending.
    pub items: Vec<u32>,
    /// Those of `items` the user also has in training, ascending (repeat
    /// purchases; empty where seen items are excluded).
    pub repeats: Vec<u32>,
}

impl Target {
    /// The target of `user` with held-out `items` (sorted, deduplicated here),
    /// marking as repeats those in `seen` (the user's training items).
    pub fn new(user: u32, mut items: Vec<u32>, seen: impl Fn(u32) -> bool) -> Self {
        items.sort_unstable();
        items.dedup();
        let repeats = items.iter().copied().filter(|&i| seen(i)).collect();
        Target { user, items, repeats }
    }
}

/// A training set and the targets it is scored on.
#[derive(Debug, Clone)]
pub struct Split {
    /// Training events, grouped by user, each user's in time order.
    pub train: Vec<Event>,
    /// Users with held-out items, ascending by user.
    pub targets: Vec<Target>,
}

/// Cuts `events` with `protocol`. Users whose history cannot be cut (a single
/// event or basket) stay whole in training and have no target. For
/// [`Protocol::LastFraction`], targets exclude items the user also has in
/// training (they are never ranked).
pub fn split(events: &[Event], protocol: Protocol) -> Split {
    let mut by_user: BTreeMap<u32, Vec<Event>> = BTreeMap::new();
    for e in events {
        by_user.entry(e.user).or_default().push(*e);
    }
    let mut train = Vec::with_capacity(events.len());
    let mut targets = Vec::new();
    for (user, mut evs) in by_user {
        evs.sort_by_key(|e| e.time); // stable: file order breaks ties
        let n = evs.len();
        let cut = match protocol {
            Protocol::LastFraction { fraction } if n >= 2 => n - ((n as f64 * fraction).round() as usize).clamp(1, n - 1),
            Protocol::LastBasket => {
                let last = evs[n - 1].time;
                evs.iter().position(|e| e.time == last).unwrap_or(n)
            }
            _ => n,
        };
        let (head, tail) = evs.split_at(cut);
        train.extend_from_slice(head);
        if head.is_empty() || tail.is_empty() {
            // A single basket: nothing to learn from, keep it all for training.
            train.extend_from_slice(tail);
            continue;
        }
        let mut items: Vec<u32> = tail.iter().map(|e| e.item).collect();
        let seen = |i: u32| head.iter().any(|e| e.item == i);
        if protocol.exclude_seen() {
            items.retain(|&i| !seen(i));
        }
        if !items.is_empty() {
            targets.push(Target::new(user, items, seen));
        }
    }
    Split { train, targets }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(user: u32, item: u32, time: i64) -> Event {
        Event { user, item, time, weight: 1.0 }
    }

    #[test]
    fn last_fraction_holds_out_the_latest_events() {
        // User 0: 10 events, times shuffled; the two latest (items 8, 9) are held out.
        let events: Vec<Event> = (0..10).rev().map(|i| ev(0, i, i as i64 * 10)).chain([ev(1, 5, 0)]).collect();
        let s = split(&events, Protocol::LastFraction { fraction: 0.2 });
        assert_eq!(s.targets, vec![Target { user: 0, items: vec![8, 9], repeats: vec![] }]);
        assert_eq!(s.train.len(), 9, "8 training events of user 0 + user 1's single event");
        assert!(s.train.iter().all(|e| !(e.user == 0 && e.item >= 8)));
    }

    #[test]
    fn at_least_one_held_out_and_one_kept() {
        let events = vec![ev(0, 1, 1), ev(0, 2, 2)];
        let s = split(&events, Protocol::LastFraction { fraction: 0.2 });
        assert_eq!(s.targets[0].items, vec![2]);
        assert_eq!(s.train, vec![ev(0, 1, 1)]);
    }

    #[test]
    fn last_basket_keeps_repeat_purchases_as_targets() {
        let events = vec![ev(0, 1, 1), ev(0, 2, 1), ev(0, 1, 2), ev(0, 3, 2), ev(1, 4, 1)];
        let s = split(&events, Protocol::LastBasket);
        assert_eq!(s.targets, vec![Target { user: 0, items: vec![1, 3], repeats: vec![1] }]);
        assert_eq!(s.train, vec![ev(0, 1, 1), ev(0, 2, 1), ev(1, 4, 1)]);
    }
}
