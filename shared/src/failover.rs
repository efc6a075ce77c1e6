//! The edge's failover policy as plain state machines with an injected clock
//! (every method takes `now_ms`), so it runs the same in the worker and in
//! native unit tests.
//!
//! * [`CircuitBreaker`] — closed → open after `failure_threshold` consecutive
//!   failures or deadline misses; open for `open_ms`, multiplied by
//!   `backoff` on each consecutive trip up to `max_open_ms`; then half-open,
//!   letting exactly one probe through: success closes it, failure re-opens it
//!   for longer. (Nygard, *Release It!*, 2nd ed., "Circuit Breaker".) Every
//!   trip starts a new epoch; an outcome is recorded against the epoch its
//!   call was admitted in ([`CircuitBreaker::record`]), so a call that left
//!   before a trip and returns after it changes nothing.
//! * [`freshness`] — a cached answer's age against `max_age` and the
//!   stale windows of RFC 5861 (`stale-while-revalidate`, `stale-if-error`).
//!
//! State lives per worker isolate and per origin: each isolate learns about
//! an origin's outage on its own (see the edge README).

/// Breaker settings; defaults match the worker's `[vars]` defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// First open period, ms.
    pub open_ms: u64,
    /// Growth factor of the open period per consecutive trip.
    pub backoff: u32,
    /// Longest open period, ms.
    pub max_open_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { failure_threshold: 5, open_ms: 30_000, backoff: 2, max_open_ms: 300_000 }
    }
}

/// Where the breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow; `failures` consecutive failures so far.
    Closed {
        /// Consecutive failures.
        failures: u32,
    },
    /// Calls are refused until `until_ms`.
    Open {
        /// When the open period ends (ms).
        until_ms: u64,
    },
    /// One probe may go through; `probing` while it is in flight.
    HalfOpen {
        /// A probe is in flight.
        probing: bool,
    },
}

/// Whether a call may go to the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Breaker closed: call.
    Allowed,
    /// Breaker half-open: this call is the probe.
    Probe,
    /// Breaker open (or a probe is already out): do not call, fall back now.
    Rejected,
}

/// What one admitted call tells the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The origin gave a usable answer.
    Success,
    /// The origin is unwell: timeout, network error, 5xx, a wrong answer.
    Failure,
    /// The origin is up but refused this request (e.g. 429, 422): neither
    /// closes nor opens the breaker, and failures so far stay counted; a
    /// half-open probe that ends so is released for the next call.
    Neutral,
}

/// A circuit breaker around origin calls (module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreaker {
    cfg: BreakerConfig,
    state: BreakerState,
    /// Consecutive trips without a success in between (drives the backoff).
    trips: u32,
    /// Trips ever: the epoch calls are admitted in.
    epoch: u64,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(cfg: BreakerConfig) -> Self {
        CircuitBreaker { cfg, state: BreakerState::Closed { failures: 0 }, trips: 0, epoch: 0 }
    }

    /// The current epoch (trips so far): read it when a call is admitted and
    /// hand it back to [`record`](Self::record) with the call's outcome.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Records the outcome of a call admitted in `epoch`. Outcomes of calls
    /// admitted before the latest trip are ignored: a slow success from
    /// before an outage must not close the breaker (nor reset its backoff),
    /// and a slow failure must not re-open a half-open breaker whose probe is out.
    pub fn record(&mut self, epoch: u64, outcome: Outcome, now_ms: u64) {
        if epoch != self.epoch {
            return;
        }
        match outcome {
            Outcome::Success => self.on_success(),
            Outcome::Failure => self.on_failure(now_ms),
            // A refused probe says nothing either way: free it, so the next
            // call probes again (else the breaker waited on it forever).
            Outcome::Neutral => self.release_probe(epoch),
        }
    }

    /// Frees the half-open probe of a call admitted in `epoch` that ended
    /// without an outcome (refused, or dropped unfinished), so another call
    /// can probe. Changes nothing in any other state or epoch.
    pub fn release_probe(&mut self, epoch: u64) {
        if epoch == self.epoch && self.state == (BreakerState::HalfOpen { probing: true }) {
            self.state = BreakerState::HalfOpen { probing: false };
        }
    }

    /// Current state, after moving an expired open period to half-open.
    pub fn state(&mut self, now_ms: u64) -> BreakerState {
        if let BreakerState::Open { until_ms } = self.state
            && now_ms >= until_ms
        {
            self.state = BreakerState::HalfOpen { probing: false };
        }
        self.state
    }

    /// Asks to call the origin at `now_ms`.
    pub fn admit(&mut self, now_ms: u64) -> Admission {
        match self.state(now_ms) {
            BreakerState::Closed { .. } => Admission::Allowed,
            BreakerState::Open { .. } | BreakerState::HalfOpen { probing: true } => Admission::Rejected,
            BreakerState::HalfOpen { probing: false } => {
                self.state = BreakerState::HalfOpen { probing: true };
                Admission::Probe
            }
        }
    }

    /// Claims the half-open probe at `now_ms` if it is free (the breaker is
    /// half-open and no probe is out), as [`admit`](Self::admit) would;
    /// otherwise changes nothing and returns false (closed callers are not admitted here).
    pub fn try_claim_probe(&mut self, now_ms: u64) -> bool {
        self.state(now_ms) == (BreakerState::HalfOpen { probing: false }) && self.admit(now_ms) == Admission::Probe
    }

    /// Whether one more failure at `now_ms` would open the breaker.
    pub fn would_trip(&mut self, now_ms: u64) -> bool {
        match self.state(now_ms) {
            BreakerState::Closed { failures } => failures + 1 >= self.cfg.failure_threshold,
            BreakerState::HalfOpen { .. } => true,
            BreakerState::Open { .. } => false,
        }
    }

    /// The origin answered well: close, forget failures and trips.
    pub fn on_success(&mut self) {
        self.state = BreakerState::Closed { failures: 0 };
        self.trips = 0;
    }

    /// The origin failed or missed its deadline at `now_ms`.
    pub fn on_failure(&mut self, now_ms: u64) {
        match self.state(now_ms) {
            BreakerState::Closed { failures } if failures + 1 < self.cfg.failure_threshold => {
                self.state = BreakerState::Closed { failures: failures + 1 };
            }
            BreakerState::Closed { .. } | BreakerState::HalfOpen { .. } => self.trip(now_ms),
            BreakerState::Open { .. } => {} // a late answer from before the trip changes nothing
        }
    }

    /// Milliseconds the next trip would stay open.
    pub fn open_period_ms(&self) -> u64 {
        let factor = u64::from(self.cfg.backoff.max(1)).saturating_pow(self.trips);
        self.cfg.open_ms.saturating_mul(factor).min(self.cfg.max_open_ms.max(self.cfg.open_ms))
    }

    fn trip(&mut self, now_ms: u64) {
        self.state = BreakerState::Open { until_ms: now_ms + self.open_period_ms() };
        self.trips += 1;
        self.epoch += 1;
    }
}

/// How usable a cached answer is (RFC 5861).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Younger than `max_age`: serve it as is.
    Fresh,
    /// Past `max_age` but within `stale-while-revalidate`: serve it and refresh in the background.
    StaleWhileRevalidate,
    /// Past both, but within `stale-if-error`: serve it only if everything else failed.
    StaleIfError,
    /// Too old for anything.
    Expired,
}

/// Cache freshness settings, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// Fresh for this long.
    pub max_age_s: u64,
    /// Then usable while revalidating for this long.
    pub stale_while_revalidate_s: u64,
    /// Usable on error until this age.
    pub stale_if_error_s: u64,
}

impl CachePolicy {
    /// The edge's defaults: fresh 60 s, then 60 s stale-while-revalidate,
    /// stale-if-error up to a day.
    pub const DEFAULT: CachePolicy = CachePolicy { max_age_s: 60, stale_while_revalidate_s: 60, stale_if_error_s: 86_400 };

    /// This policy as a shared cache's `Cache-Control` value (RFC 9111, RFC 5861),
    /// e.g. `public, max-age=60, stale-while-revalidate=60, stale-if-error=86400`.
    pub fn cache_control(&self) -> String {
        format!("public, max-age={}, stale-while-revalidate={}, stale-if-error={}", self.max_age_s, self.stale_while_revalidate_s, self.stale_if_error_s)
    }
}

/// Freshness of an answer stored at `stored_at_ms`, seen at `now_ms`. A
/// stored-at time in the future (clock skew) counts as fresh.
pub fn freshness(policy: CachePolicy, stored_at_ms: u64, now_ms: u64) -> Freshness {
    let age_ms = now_ms.saturating_sub(stored_at_ms);
    let s = |secs: u64| secs.saturating_mul(1000);
    if age_ms < s(policy.max_age_s) {
        Freshness::Fresh
    } else if age_ms < s(policy.max_age_s + policy.stale_while_revalidate_s) {
        Freshness::StaleWhileRevalidate
    } else if age_ms < s(policy.stale_if_error_s) {
        Freshness::StaleIfError
    } else {
        Freshness::Expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig { failure_threshold: 3, open_ms: 1_000, backoff: 2, max_open_ms: 3_000 })
    }

    /// A breaker tripped by failures at 0, 1 and 2 ms (open until 1,002 ms).
    fn tripped() -> CircuitBreaker {
        let mut b = breaker();
        for t in 0..3 {
            b.on_failure(t);
        }
        b
    }

    #[test]
    fn closed_counts_consecutive_failures_and_success_resets() {
        let mut b = breaker();
        b.on_failure(0);
        b.on_failure(1);
        assert_eq!(b.state(2), BreakerState::Closed { failures: 2 });
        b.on_success();
        b.on_failure(3);
        b.on_failure(4);
        assert_eq!(b.admit(5), Admission::Allowed, "two failures after a success do not trip a threshold of 3");
    }

    #[test]
    fn threshold_opens_and_open_rejects_until_the_period_ends() {
        let mut b = tripped();
        assert_eq!(b.state(2), BreakerState::Open { until_ms: 1_002 });
        assert_eq!(b.admit(500), Admission::Rejected);
        assert_eq!(b.admit(1_001), Admission::Rejected);
        assert_eq!(b.admit(1_002), Admission::Probe, "half-open at the end of the period");
    }

    #[test]
    fn half_open_lets_exactly_one_probe_through() {
        let mut b = tripped();
        assert!(!CircuitBreaker::new(b.cfg).try_claim_probe(2_000), "a closed breaker has no probe to claim");
        assert!(!b.try_claim_probe(500), "still open");
        assert_eq!(b.admit(2_000), Admission::Probe);
        assert_eq!(b.admit(2_001), Admission::Rejected, "second caller while the probe is out");
        assert!(!b.try_claim_probe(2_001), "the probe is already out");
        b.on_success();
        assert_eq!(b.state(2_002), BreakerState::Closed { failures: 0 });
        assert_eq!(b.admit(2_003), Admission::Allowed);
    }

    #[test]
    fn failed_probe_reopens_for_longer_up_to_the_cap() {
        let mut b = tripped();
        // Trip 1: 1 s. Probe fails → trip 2: 2 s. Probe fails → trip 3: 4 s capped at 3 s.
        assert_eq!(b.admit(1_002), Admission::Probe);
        b.on_failure(1_010);
        assert_eq!(b.state(1_011), BreakerState::Open { until_ms: 3_010 });
        assert_eq!(b.admit(3_010), Admission::Probe);
        b.on_failure(3_020);
        assert_eq!(b.state(3_021), BreakerState::Open { until_ms: 6_020 });
        // A success resets the backoff: the next trip is 1 s again.
        assert_eq!(b.admit(6_020), Admission::Probe);
        b.on_success();
        for t in 0..3 {
            b.on_failure(7_000 + t);
        }
        assert_eq!(b.state(7_003), BreakerState::Open { until_ms: 8_002 });
    }

    #[test]
    fn outcomes_of_calls_admitted_before_a_trip_are_ignored() {
        let mut b = breaker();
        let before = b.epoch();
        assert_eq!(b.admit(0), Admission::Allowed);
        for t in 0..3 {
            b.on_failure(t);
        }
        // The slow call admitted before the trip succeeds now: still open, backoff kept.
        b.record(before, Outcome::Success, 10);
        assert_eq!(b.state(10), BreakerState::Open { until_ms: 1_002 });
        // Half-open, probe out: a late failure from before the trip does not re-open it.
        assert_eq!(b.admit(1_002), Admission::Probe);
        let probe = b.epoch();
        b.record(before, Outcome::Failure, 1_003);
        assert_eq!(b.state(1_003), BreakerState::HalfOpen { probing: true });
        b.record(probe, Outcome::Failure, 1_004);
        assert_eq!(b.state(1_005), BreakerState::Open { until_ms: 3_004 }, "the probe's own failure re-opens, backoff doubled");
    }

    #[test]
    fn neutral_outcomes_neither_close_nor_count() {
        let mut b = breaker();
        let e = b.epoch();
        b.record(e, Outcome::Failure, 0);
        b.record(e, Outcome::Neutral, 1);
        assert_eq!(b.state(2), BreakerState::Closed { failures: 1 }, "a 429 does not wipe the failure count");
        b.record(e, Outcome::Failure, 3);
        b.record(e, Outcome::Failure, 4);
        assert!(matches!(b.state(5), BreakerState::Open { .. }));
    }

    /// Hardening round 2, item 2: a probe refused with 429/422/… used to
    /// leave the breaker "half-open, probe out" for the isolate's life.
    #[test]
    fn a_refused_or_dropped_probe_is_released_for_the_next_call() {
        let mut b = tripped();
        assert_eq!(b.admit(1_002), Admission::Probe);
        let e = b.epoch();
        b.record(e, Outcome::Neutral, 1_003);
        assert_eq!(b.state(1_004), BreakerState::HalfOpen { probing: false }, "released");
        assert_eq!(b.admit(1_004), Admission::Probe, "the next call probes");
        b.release_probe(e - 1);
        assert_eq!(b.state(1_005), BreakerState::HalfOpen { probing: true }, "a call from an older epoch frees nothing");
        b.release_probe(e);
        assert_eq!(b.admit(1_006), Admission::Probe, "a dropped probe is freed");
        b.record(e, Outcome::Success, 1_007);
        assert_eq!(b.state(1_008), BreakerState::Closed { failures: 0 });
    }

    #[test]
    fn cache_control_states_the_policy() {
        assert_eq!(CachePolicy::DEFAULT.cache_control(), "public, max-age=60, stale-while-revalidate=60, stale-if-error=86400");
    }

    #[test]
    fn late_failures_while_open_do_not_extend_the_period() {
        let mut b = tripped();
        b.on_failure(500);
        assert_eq!(b.state(600), BreakerState::Open { until_ms: 1_002 });
    }

    #[test]
    fn freshness_follows_rfc_5861_windows() {
        let p = CachePolicy { max_age_s: 60, stale_while_revalidate_s: 30, stale_if_error_s: 3_600 };
        assert_eq!(freshness(p, 1_000, 1_000), Freshness::Fresh);
        assert_eq!(freshness(p, 1_000, 60_999), Freshness::Fresh);
        assert_eq!(freshness(p, 1_000, 61_000), Freshness::StaleWhileRevalidate);
        assert_eq!(freshness(p, 1_000, 91_000), Freshness::StaleIfError);
        assert_eq!(freshness(p, 1_000, 3_601_000), Freshness::Expired);
        assert_eq!(freshness(p, 5_000, 1_000), Freshness::Fresh, "clock skew: stored in the future");
    }
}
