//! Drawing an index in proportion to its weight: the cumulative weights and
//! a binary search (inverse transform sampling). Shared by the synthetic log
//! generator and the sequence model's popularity-sampled negatives.

use rand::Rng;
use rand::rngs::StdRng;

/// Cumulative weights `[w₀, w₀+w₁, …]` of non-negative weights.
pub struct Cumulative(Vec<f64>);

impl Cumulative {
    /// From the weights in index order.
    pub fn new(weights: impl Iterator<Item = f64>) -> Self {
        let mut total = 0.0;
        Cumulative(
            weights
                .map(|w| {
                    total += w;
                    total
                })
                .collect(),
        )
    }

    /// Sum of the weights.
    pub fn total(&self) -> f64 {
        self.0.last().copied().unwrap_or(0.0)
    }

    /// Whether there is no index to draw.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// An index `i` with probability `wᵢ / total` (one uniform draw from `rng`).
    ///
    /// # Panics
    /// When empty.
    pub fn draw(&self, rng: &mut StdRng) -> usize {
        let x = rng.random::<f64>() * self.total();
        self.0.partition_point(|&c| c <= x).min(self.0.len() - 1)
    }
}
