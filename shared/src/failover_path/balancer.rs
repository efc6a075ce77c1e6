//! Origin selection across regions: which origins a request may ask, in
//! which order, and when to hedge. One [`Balancer`] per isolate.
//!
//! * **Tiers.** Origins have a priority (1 is the highest); the best tier
//!   with an admitted origin serves, lower tiers are the failover order
//!   (nginx `backup`, Envoy priority levels).
//! * **Within a tier: power of two choices over peak-EWMA cost** (Mitzenmacher
//!   2001; Finagle's and linkerd's `PeakEwma`, tower's `p2c`): two origins
//!   drawn by weight, the one with the lower `rtt_estimate × (in_flight + 1) /
//!   weight` goes first. The estimate jumps to a slower sample at once (peak)
//!   and otherwise decays toward each new sample, and toward zero while idle,
//!   with time constant `decay_ms`, so a slowed replica is avoided at once and
//!   tried again once it has been left alone for a while.
//! * **Outlier ejection** (Envoy's spirit): each origin's own
//!   [`CircuitBreaker`] ejects it after consecutive failures, for an open
//!   period that grows on repeat; at most `max_ejected_pct` of a tier (at
//!   least one origin) is ejected at once, so a fault on the edge's side
//!   cannot empty a tier.
//! * **Ramp after failback**: a breaker closed by its half-open probe admits
//!   1, 2, 4, … requests in flight as successes come in (slow start), so a
//!   recovered region is not hit by a thundering herd; the rest go on to the
//!   next origin.
//! * **Hedging budget** (Dean & Barroso, "The Tail at Scale", CACM 2013;
//!   Envoy's retry budget): a token bucket that earns `budget_pct / 100`
//!   tokens per request that asks an origin and spends one per hedged
//!   request, so hedges stay within `budget_pct` % of requests (plus a burst
//!   of [`HEDGE_BURST`]).

use std::collections::VecDeque;

use crate::edge_config::OriginSpec;
use crate::failover::{BreakerConfig, BreakerState, CircuitBreaker, Outcome};

/// Hedging settings (`HEDGE_*` vars).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HedgePolicy {
    /// Hedged requests allowed, % of requests that ask an origin; 0 disables hedging.
    pub budget_pct: u32,
    /// Hedge when the first origin has not answered by this percentile of its
    /// recent latency (e.g. 90: its p90).
    pub percentile: u32,
    /// …but never sooner than this, ms (keeps loopback-fast jitter from hedging).
    pub min_delay_ms: u64,
}

impl Default for HedgePolicy {
    fn default() -> Self {
        HedgePolicy { budget_pct: 10, percentile: 90, min_delay_ms: 10 }
    }
}

/// Balancer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalancerConfig {
    /// Time constant of the peak-EWMA latency estimate, ms (linkerd: 10 s).
    pub decay_ms: u64,
    /// Most of a tier ejected at once, % (at least one origin).
    pub max_ejected_pct: u32,
    /// Hedging.
    pub hedge: HedgePolicy,
}

impl Default for BalancerConfig {
    fn default() -> Self {
        BalancerConfig { decay_ms: 10_000, max_ejected_pct: 50, hedge: HedgePolicy::default() }
    }
}

/// Tokens the hedging bucket holds at most (and starts with).
pub const HEDGE_BURST: f64 = 10.0;
/// Latency samples kept per origin for the hedging percentile: recent
/// enough that the threshold recovers within a second or two of traffic
/// after an incident left slow samples behind.
const WINDOW: usize = 32;
/// Samples needed before an origin's percentile is trusted for hedging.
const MIN_SAMPLES: usize = 16;
/// Latency assumed for an origin never measured, ms (tower's default RTT is 30 ms).
const DEFAULT_RTT_MS: f64 = 30.0;
/// The latency a failed attempt counts as in the peak-EWMA estimate, ms.
const FAILURE_PENALTY_MS: u64 = 250;
/// Ramp steps after a failback: the in-flight cap doubles per success up to 2^RAMP_STEPS, then lifts.
const RAMP_STEPS: u32 = 6;
/// …and lifts this long after the probe anyway, ms: a standby that takes no
/// traffic while the primary serves must not stay capped for the next failover.
const RAMP_MAX_MS: u64 = 1_000;

/// Peak-EWMA round-trip estimate (tower `peak_ewma`).
#[derive(Debug, Clone, Copy, PartialEq)]
struct PeakEwma {
    estimate_ms: Option<f64>,
    stamp_ms: u64,
}

impl PeakEwma {
    fn decayed(&self, now_ms: u64, decay_ms: u64, toward: f64) -> f64 {
        let Some(est) = self.estimate_ms else { return toward };
        let elapsed = now_ms.saturating_sub(self.stamp_ms) as f64;
        let w = (-elapsed / decay_ms.max(1) as f64).exp();
        est * w + toward * (1.0 - w)
    }

    fn observe(&mut self, rtt_ms: f64, now_ms: u64, decay_ms: u64) {
        self.estimate_ms = Some(match self.estimate_ms {
            Some(est) if rtt_ms <= est => self.decayed(now_ms, decay_ms, rtt_ms),
            _ => rtt_ms, // a peak is taken at once
        });
        self.stamp_ms = now_ms;
    }

    /// The estimate now, decayed toward zero since the last sample.
    fn now(&self, now_ms: u64, decay_ms: u64) -> f64 {
        if self.estimate_ms.is_none() { DEFAULT_RTT_MS } else { self.decayed(now_ms, decay_ms, 0.0) }
    }
}

/// One origin's state at this isolate.
#[derive(Debug, Clone)]
pub struct OriginState {
    /// Name, URL, priority, weight.
    pub spec: OriginSpec,
    /// Its circuit breaker (open = ejected).
    pub breaker: CircuitBreaker,
    ewma: PeakEwma,
    window: VecDeque<u64>,
    /// Requests in flight to it from this isolate.
    pub in_flight: u32,
    /// The model version of its latest valid answer.
    pub version: Option<String>,
    /// Successes since a probe closed its breaker, and when it did (ms), while ramping.
    ramp: Option<(u32, u64)>,
}

impl OriginState {
    fn new(spec: OriginSpec, breaker: BreakerConfig) -> Self {
        OriginState {
            spec,
            breaker: CircuitBreaker::new(breaker),
            ewma: PeakEwma { estimate_ms: None, stamp_ms: 0 },
            window: VecDeque::new(),
            in_flight: 0,
            version: None,
            ramp: None,
        }
    }

    /// Load-balancing cost at `now_ms`: `rtt × (in_flight + 1) / weight`.
    pub fn cost(&self, now_ms: u64, decay_ms: u64) -> f64 {
        self.ewma.now(now_ms, decay_ms) * f64::from(self.in_flight + 1) / f64::from(self.spec.weight.max(1))
    }

    /// The `p`-th percentile (0–100) of its recent latencies, ms, once enough are known.
    pub fn latency_percentile(&self, p: u32) -> Option<u64> {
        if self.window.len() < MIN_SAMPLES {
            return None;
        }
        let mut v: Vec<u64> = self.window.iter().copied().collect();
        v.sort_unstable();
        let rank = (u64::from(p.min(100)) * (v.len() as u64 - 1)).div_ceil(100);
        Some(v[rank as usize])
    }

    /// The peak-EWMA estimate at `now_ms`, ms (none before the first sample).
    pub fn latency_estimate_ms(&self, now_ms: u64, decay_ms: u64) -> Option<f64> {
        self.ewma.estimate_ms.map(|_| self.ewma.now(now_ms, decay_ms))
    }

    /// The in-flight cap at `now_ms` while ramping after a failback, if ramping.
    pub fn ramp_cap(&self, now_ms: u64) -> Option<u32> {
        self.ramp.filter(|&(_, since)| now_ms.saturating_sub(since) < RAMP_MAX_MS).map(|(s, _)| 1 << s.min(RAMP_STEPS))
    }

    fn sample(&mut self, ms: u64, now_ms: u64, decay_ms: u64) {
        self.ewma.observe(ms as f64, now_ms, decay_ms);
        if self.window.len() == WINDOW {
            self.window.pop_front();
        }
        self.window.push_back(ms);
    }
}

/// How an admitted attempt ended, for [`Balancer::finish`].
#[derive(Debug, Clone, PartialEq)]
pub enum Finished {
    /// A valid answer after `ms`, from a model of `version`.
    Answered {
        /// Round trip, ms.
        ms: u64,
        /// `model.version` of the answer.
        version: String,
    },
    /// Failed after `ms` with this breaker outcome (failure or neutral).
    Failed {
        /// Time to the failure, ms.
        ms: u64,
        /// What it tells the breaker.
        outcome: Outcome,
    },
    /// Aborted after `ms` because another origin answered first: a lower
    /// bound on its latency, not a failure.
    Abandoned {
        /// Time until aborted, ms.
        ms: u64,
    },
}

/// Hedging and failover counters of this isolate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct HedgeStats {
    /// Requests that asked at least one origin.
    pub requests: u64,
    /// Hedged requests sent.
    pub hedges: u64,
    /// Hedged requests whose answer was served.
    pub hedges_won: u64,
    /// Hedges not sent because the budget was spent.
    pub hedges_over_budget: u64,
    /// Requests that moved on to another origin after one failed.
    pub failovers: u64,
}

/// The isolate's origins and how to choose among them (module docs).
#[derive(Debug, Clone)]
pub struct Balancer {
    /// Every configured origin, in configuration order.
    pub origins: Vec<OriginState>,
    cfg: BalancerConfig,
    rng: u64,
    tokens: f64,
    /// Counters.
    pub stats: HedgeStats,
}

impl Balancer {
    /// All origins closed and unmeasured; `seed` drives the random choices.
    pub fn new(specs: &[OriginSpec], breaker: BreakerConfig, cfg: BalancerConfig, seed: u64) -> Self {
        Balancer {
            origins: specs.iter().cloned().map(|s| OriginState::new(s, breaker)).collect(),
            cfg,
            rng: seed | 1,
            tokens: HEDGE_BURST,
            stats: HedgeStats::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> BalancerConfig {
        self.cfg
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: the choice needs spread, not cryptographic strength.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn admitted(&mut self, i: usize, now_ms: u64) -> bool {
        let o = &mut self.origins[i];
        let closed = matches!(o.breaker.state(now_ms), BreakerState::Closed { .. });
        closed && o.ramp_cap(now_ms).is_none_or(|cap| o.in_flight < cap)
    }

    /// The origins this request may ask, best first: tiers in priority order;
    /// within a tier the power-of-two-choices pick first, then the rest by
    /// cost. Ejected (open or half-open) origins and ramp-capped ones are left out.
    pub fn plan(&mut self, now_ms: u64) -> Vec<usize> {
        let mut tiers: Vec<u32> = self.origins.iter().map(|o| o.spec.priority).collect();
        tiers.sort_unstable();
        tiers.dedup();
        let decay = self.cfg.decay_ms;
        let mut plan = Vec::with_capacity(self.origins.len());
        for tier in tiers {
            let mut members: Vec<usize> = (0..self.origins.len()).filter(|&i| self.origins[i].spec.priority == tier && self.admitted(i, now_ms)).collect();
            members.sort_by(|&a, &b| self.origins[a].cost(now_ms, decay).total_cmp(&self.origins[b].cost(now_ms, decay)));
            if members.len() > 2 {
                // Two distinct draws by weight; the cheaper goes first.
                let a = self.draw(&members, None);
                let b = self.draw(&members, Some(a));
                let first = if self.origins[a].cost(now_ms, decay) <= self.origins[b].cost(now_ms, decay) { a } else { b };
                members.retain(|&m| m != first);
                members.insert(0, first);
            }
            plan.extend(members);
        }
        plan
    }

    fn draw(&mut self, members: &[usize], except: Option<usize>) -> usize {
        let pool: Vec<usize> = members.iter().copied().filter(|&m| Some(m) != except).collect();
        let total: u64 = pool.iter().map(|&m| u64::from(self.origins[m].spec.weight.max(1))).sum();
        let mut r = self.next_random() % total.max(1);
        for &m in &pool {
            let w = u64::from(self.origins[m].spec.weight.max(1));
            if r < w {
                return m;
            }
            r -= w;
        }
        pool[0]
    }

    /// Claims the half-open probe of the best-priority origin that has one
    /// free (its ejection time is over): the caller sends it in the background.
    pub fn claim_probe(&mut self, now_ms: u64) -> Option<usize> {
        let mut candidates: Vec<usize> =
            (0..self.origins.len()).filter(|&i| self.origins[i].breaker.state(now_ms) == (BreakerState::HalfOpen { probing: false })).collect();
        candidates.sort_by_key(|&i| self.origins[i].spec.priority);
        let i = *candidates.first()?;
        self.origins[i].breaker.try_claim_probe(now_ms).then_some(i)
    }

    /// Starts an attempt on origin `i` (already admitted by [`plan`](Self::plan)
    /// or claimed as a probe): counts it in flight until [`end`](Self::end)
    /// and returns the breaker epoch to hand back to [`finish`](Self::finish).
    pub fn begin(&mut self, i: usize) -> u64 {
        let o = &mut self.origins[i];
        o.in_flight += 1;
        o.breaker.epoch()
    }

    /// The attempt on origin `i` is no longer in flight (however it ended).
    pub fn end(&mut self, i: usize) {
        self.origins[i].in_flight = self.origins[i].in_flight.saturating_sub(1);
    }

    /// Records how an attempt begun in `epoch` ended: latency estimate,
    /// breaker (with the ejection cap), ramp and model version.
    pub fn finish(&mut self, i: usize, epoch: u64, how: Finished, now_ms: u64) {
        let decay = self.cfg.decay_ms;
        let cap = self.ejection_cap(i);
        let ejected_in_tier = self.ejected_in_tier(i, now_ms);
        let o = &mut self.origins[i];
        let was_half_open = matches!(o.breaker.state(now_ms), BreakerState::HalfOpen { .. });
        match how {
            Finished::Answered { ms, version } => {
                o.sample(ms, now_ms, decay);
                o.breaker.record(epoch, Outcome::Success, now_ms);
                if epoch == o.breaker.epoch() {
                    o.version = Some(version);
                    if was_half_open {
                        o.ramp = Some((0, now_ms));
                    } else if let Some((s, since)) = o.ramp {
                        o.ramp = (s + 1 < RAMP_STEPS && now_ms.saturating_sub(since) < RAMP_MAX_MS).then_some((s + 1, since));
                    }
                }
            }
            Finished::Failed { ms, outcome } => {
                // A failure costs like a slow answer: a replica failing fast must
                // not look cheap to the balancer (it stays out of the hedging window).
                if outcome == Outcome::Failure {
                    o.ewma.observe(ms.max(FAILURE_PENALTY_MS) as f64, now_ms, decay);
                }
                // Envoy's max_ejection_percent: a closed origin that would be ejected
                // past the tier's cap stays in (its failures still count for the next chance).
                let outcome = if outcome == Outcome::Failure && o.breaker.would_trip(now_ms) && !was_half_open && ejected_in_tier >= cap {
                    Outcome::Neutral
                } else {
                    outcome
                };
                o.breaker.record(epoch, outcome, now_ms);
                if !matches!(o.breaker.state(now_ms), BreakerState::Closed { .. }) {
                    o.ramp = None;
                }
            }
            Finished::Abandoned { ms } => o.sample(ms, now_ms, decay),
        }
    }

    fn ejection_cap(&self, i: usize) -> usize {
        let tier = self.origins.iter().filter(|o| o.spec.priority == self.origins[i].spec.priority).count();
        (tier * self.cfg.max_ejected_pct as usize / 100).max(1)
    }

    fn ejected_in_tier(&mut self, i: usize, now_ms: u64) -> usize {
        let p = self.origins[i].spec.priority;
        let mut ejected = 0;
        for o in self.origins.iter_mut().filter(|o| o.spec.priority == p) {
            if !matches!(o.breaker.state(now_ms), BreakerState::Closed { .. }) {
                ejected += 1;
            }
        }
        ejected
    }

    /// When to hedge an attempt on origin `i`, ms after it started: its
    /// recent latency percentile, at least `min_delay_ms`; `None` while
    /// hedging is off or the origin has too few samples.
    pub fn hedge_delay_ms(&self, i: usize) -> Option<u64> {
        let h = self.cfg.hedge;
        if h.budget_pct == 0 {
            return None;
        }
        self.origins[i].latency_percentile(h.percentile).map(|p| p.max(h.min_delay_ms))
    }

    /// A request is about to ask the origins: it earns its share of the hedging budget.
    pub fn count_request(&mut self) {
        self.stats.requests += 1;
        self.tokens = (self.tokens + f64::from(self.cfg.hedge.budget_pct) / 100.0).min(HEDGE_BURST);
    }

    /// Spends a hedge from the budget; false (counted) when it is spent.
    pub fn try_hedge(&mut self) -> bool {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.stats.hedges += 1;
            true
        } else {
            self.stats.hedges_over_budget += 1;
            false
        }
    }

    /// The model version the edge should expect: the best-priority admitted
    /// origin's latest, else any origin's, else none.
    pub fn preferred_version(&mut self, now_ms: u64) -> Option<String> {
        let mut order: Vec<usize> = (0..self.origins.len()).collect();
        order.sort_by_key(|&i| self.origins[i].spec.priority);
        let admitted = order.iter().copied().find(|&i| self.admitted(i, now_ms) && self.origins[i].version.is_some());
        admitted.or_else(|| order.into_iter().find(|&i| self.origins[i].version.is_some())).and_then(|i| self.origins[i].version.clone())
    }

    /// `name=version` of every origin that has answered, when they do not all
    /// serve the same model version (a deployment half rolled out, or a
    /// region left behind).
    pub fn version_mismatch(&self) -> Option<Vec<String>> {
        // Every answer asks: no allocation unless the versions differ.
        let mut known = self.origins.iter().filter_map(|o| Some((o.spec.name.as_str(), o.version.as_deref()?)));
        let first = known.clone().next()?.1;
        known.clone().any(|(_, v)| v != first).then(|| known.by_ref().map(|(n, v)| format!("{n}={v}")).collect())
    }

    /// The breaker state of origin `i` at `now_ms`, as a word: `closed`,
    /// `ramping`, `open` (ejected) or `half-open`.
    pub fn state_word(&mut self, i: usize, now_ms: u64) -> &'static str {
        let o = &mut self.origins[i];
        match o.breaker.state(now_ms) {
            BreakerState::Closed { .. } if o.ramp_cap(now_ms).is_some() => "ramping",
            BreakerState::Closed { .. } => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen { .. } => "half-open",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, priority: u32, weight: u32) -> OriginSpec {
        OriginSpec { name: name.into(), url: format!("http://{name}"), priority, weight }
    }

    fn balancer(specs: &[OriginSpec]) -> Balancer {
        Balancer::new(specs, BreakerConfig { failure_threshold: 2, open_ms: 1_000, backoff: 2, max_open_ms: 8_000 }, BalancerConfig::default(), 7)
    }

    fn answered(b: &mut Balancer, i: usize, ms: u64, now: u64) {
        let e = b.begin(i);
        b.finish(i, e, Finished::Answered { ms, version: "v1".into() }, now + ms);
        b.end(i);
    }

    fn failed(b: &mut Balancer, i: usize, now: u64) {
        let e = b.begin(i);
        b.finish(i, e, Finished::Failed { ms: 1, outcome: Outcome::Failure }, now + 1);
        b.end(i);
    }

    #[test]
    fn the_best_tier_serves_and_lower_tiers_are_the_failover_order() {
        let mut b = balancer(&[spec("standby", 2, 1), spec("primary", 1, 1)]);
        assert_eq!(b.plan(0), vec![1, 0]);
        failed(&mut b, 1, 0);
        failed(&mut b, 1, 1);
        assert_eq!(b.plan(2), vec![0], "the ejected primary is not asked");
        assert_eq!(b.state_word(1, 2), "open");
    }

    #[test]
    fn peak_ewma_sends_traffic_to_the_faster_replica_and_retries_the_slow_one_later() {
        let mut b = balancer(&[spec("a", 1, 1), spec("b", 1, 1)]);
        answered(&mut b, 0, 100, 0);
        answered(&mut b, 1, 5, 0);
        assert_eq!(b.plan(200)[0], 1);
        // In flight counts: the fast one carries 19 requests before the slow one is cheaper.
        for _ in 0..19 {
            b.begin(1);
        }
        assert_eq!(b.plan(200)[0], 1, "5 ms × 20 in flight ≤ 100 ms");
        b.begin(1);
        assert_eq!(b.plan(200)[0], 0, "5 ms × 21 in flight > 100 ms");
        // Left alone, the slow replica's estimate decays toward zero and it is tried again.
        let mut idle = balancer(&[spec("a", 1, 1), spec("b", 1, 1)]);
        answered(&mut idle, 0, 100, 0);
        answered(&mut idle, 1, 5, 0);
        assert!(idle.origins[0].cost(60_000, 10_000) < 1.0, "after 6 time constants");
    }

    #[test]
    fn a_peak_is_taken_at_once_and_recovery_is_gradual() {
        let mut e = PeakEwma { estimate_ms: None, stamp_ms: 0 };
        e.observe(10.0, 0, 1_000);
        e.observe(200.0, 1, 1_000);
        assert_eq!(e.estimate_ms, Some(200.0));
        e.observe(10.0, 1_001, 1_000);
        let est = e.estimate_ms.unwrap();
        assert!(est > 70.0 && est < 80.0, "one time constant later: 200·e⁻¹ + 10·(1 − e⁻¹) = {est}");
    }

    #[test]
    fn weights_share_a_tier_of_equal_replicas() {
        let mut b = balancer(&[spec("a", 1, 1), spec("b", 1, 3), spec("c", 1, 1)]);
        let mut first = [0; 3];
        for _ in 0..3_000 {
            first[b.plan(0)[0]] += 1;
        }
        // Equal (unmeasured) latency: cost is 30 ms / weight, so b wins every draw it is in.
        assert!(first[1] > first[0] + first[2], "{first:?}");
        assert!(first[0] > 0 && first[2] > 0, "{first:?}");
    }

    #[test]
    fn at_most_half_a_tier_is_ejected_at_once() {
        let mut b = balancer(&[spec("a", 1, 1), spec("b", 1, 1), spec("c", 2, 1)]);
        for t in 0..2 {
            failed(&mut b, 0, t);
        }
        assert_eq!(b.state_word(0, 2), "open");
        for t in 2..6 {
            failed(&mut b, 1, t);
        }
        assert_eq!(b.state_word(1, 6), "closed", "the second of two may not be ejected while the first is");
        assert_eq!(b.plan(6), vec![1, 2]);
        // A tier of one may eject its only member: the next tier serves.
        let mut solo = balancer(&[spec("a", 1, 1), spec("b", 2, 1)]);
        failed(&mut solo, 0, 0);
        failed(&mut solo, 0, 1);
        assert_eq!(solo.plan(2), vec![1]);
    }

    #[test]
    fn a_recovered_primary_is_probed_then_ramped() {
        let mut b = balancer(&[spec("a", 1, 1), spec("b", 2, 1)]);
        failed(&mut b, 0, 0);
        failed(&mut b, 0, 1);
        assert_eq!(b.claim_probe(500), None, "still open");
        assert_eq!(b.plan(1_010), vec![1]);
        assert_eq!(b.claim_probe(1_010), Some(0));
        assert_eq!(b.claim_probe(1_010), None, "one probe at a time");
        answered(&mut b, 0, 5, 1_001);
        assert_eq!(b.state_word(0, 1_006), "ramping");
        // One in flight allowed at first; the second request goes to the standby.
        assert_eq!(b.plan(1_006), vec![0, 1]);
        let e = b.begin(0);
        assert_eq!(b.plan(1_006), vec![1]);
        b.finish(0, e, Finished::Answered { ms: 5, version: "v1".into() }, 1_011);
        b.end(0);
        assert_eq!(b.origins[0].ramp_cap(1_011), Some(2), "doubles per success");
        for t in 0..RAMP_STEPS as u64 {
            answered(&mut b, 0, 5, 1_020 + 10 * t);
        }
        assert_eq!(b.state_word(0, 1_100), "closed", "the ramp ends after its steps");
        // A standby probed back while the primary serves gets no successes: its ramp ends with time.
        let mut c = balancer(&[spec("a", 1, 1), spec("b", 2, 1)]);
        failed(&mut c, 1, 0);
        failed(&mut c, 1, 1);
        assert_eq!(c.claim_probe(1_010), Some(1));
        answered(&mut c, 1, 5, 1_010);
        assert_eq!(c.state_word(1, 1_020), "ramping");
        assert_eq!(c.state_word(1, 1_015 + RAMP_MAX_MS), "closed");
    }

    #[test]
    fn hedges_wait_for_enough_samples_and_stay_within_the_budget() {
        let mut b = balancer(&[spec("a", 1, 1), spec("b", 2, 1)]);
        assert_eq!(b.hedge_delay_ms(0), None, "no samples yet");
        for i in 0..20 {
            answered(&mut b, 0, if i < 18 { 4 } else { 40 }, i * 10);
        }
        assert_eq!(b.hedge_delay_ms(0), Some(40), "p90 of 18×4 ms and 2×40 ms");
        for i in 0..20 {
            answered(&mut b, 0, 2, 1_000 + i);
        }
        assert_eq!(b.hedge_delay_ms(0), Some(10), "never under min_delay_ms");
        let mut sent = 0;
        for _ in 0..1_000 {
            b.count_request();
            if b.try_hedge() {
                sent += 1;
            }
        }
        assert!(sent <= 100 + HEDGE_BURST as u64, "{sent} hedges for 1,000 requests at a 10 % budget");
        assert!(sent >= 100, "{sent}");
        assert_eq!(b.stats.hedges, sent);
        assert_eq!(b.stats.hedges_over_budget, 1_000 - sent);
    }

    #[test]
    fn versions_that_differ_between_regions_are_named() {
        let mut b = balancer(&[spec("eu", 1, 1), spec("us", 2, 1)]);
        answered(&mut b, 0, 5, 0);
        answered(&mut b, 1, 5, 0);
        assert_eq!(b.version_mismatch(), None);
        let e = b.begin(1);
        b.finish(1, e, Finished::Answered { ms: 5, version: "v2".into() }, 15);
        assert_eq!(b.version_mismatch(), Some(vec!["eu=v1".to_string(), "us=v2".to_string()]));
        assert_eq!(b.preferred_version(20).as_deref(), Some("v1"), "the primary's version keys the cache");
    }
}
