//! The edge worker's settings, read from `wrangler.toml` `[vars]` (or any
//! name → value lookup, so they are tested natively).
//!
//! | var | default | meaning |
//! |---|---|---|
//! | `ORIGINS` | none | the origins (regions) as a JSON list, below; replaces `ORIGIN_URL` |
//! | `ORIGIN_URL` | none (edge-only) | one origin's base URL, e.g. `http://127.0.0.1:8080`: a list of one named `origin` |
//! | `STRATEGY` | `origin-first` | `origin-first` or `edge-first` |
//! | `ORIGIN_DEADLINE_MS` | 150 | longest wait on the origin, ms, counted from the request's arrival (cache lookup included) |
//! | `ORIGIN_MIN_BUDGET_MS` | 20 | when less of the deadline is left after the cache lookup, the origin is not asked (and not blamed), ms |
//! | `ORIGIN_TRY_MS` | half the deadline | one origin's share of the deadline when another origin could still be asked, ms |
//! | `HEDGE_BUDGET_PCT` | 10 | hedged requests at most, % of requests that ask an origin; 0 turns hedging off |
//! | `HEDGE_PERCENTILE` | 90 | hedge when the origin has not answered by this percentile of its recent latency |
//! | `HEDGE_MIN_MS` | 10 | never hedge sooner than this, ms |
//! | `LATENCY_DECAY_MS` | 10000 | time constant of each origin's peak-EWMA latency estimate, ms |
//! | `MAX_EJECTED_PCT` | 50 | most of one tier ejected (breaker open) at once, % (at least one origin) |
//! | `BREAKER_FAILURES` | 5 | consecutive failures that open an origin's breaker (eject it) |
//! | `BREAKER_OPEN_MS` | 30000 | first open period, ms |
//! | `BREAKER_BACKOFF` | 2 | open period growth per consecutive trip |
//! | `BREAKER_MAX_OPEN_MS` | 300000 | longest open period, ms |
//! | `CACHE_MAX_AGE_S` | 60 | a cached origin answer is fresh this long, s |
//! | `CACHE_SWR_S` | 60 | then served while revalidating this long (RFC 5861), s |
//! | `STALE_S` | 86400 | served on error up to this age (RFC 5861 stale-if-error), s |
//! | `CACHE_GENERATION` | `1` | part of every cache key: bump it to purge all cached answers |
//! | `EDGEREC_ENV` | `development` | `production` refuses an origin that is not `https://` or has no `ORIGIN_SECRET` |
//!
//! `ORIGINS` is a JSON list of objects with `name` (1–32 of `A-Z a-z 0-9 - _`,
//! unique: it names the origin in answers and `/healthz`), `url`
//! (`http://` or `https://`), `priority` (1–100, default 1; 1 is served
//! first, higher numbers are standby tiers) and `weight` (1–100, default 1;
//! the share within a tier), e.g.
//!
//! ```json
//! [{"name": "eu-west", "url": "https://eu.origin.shop.example", "priority": 1},
//!  {"name": "us-east", "url": "https://us.origin.shop.example", "priority": 2}]
//! ```
//!
//! `ORIGIN_SECRET` (a secret: `wrangler secret put ORIGIN_SECRET`) is the
//! credential the edge sends every origin in `x-edgerec-edge-key`.

use crate::failover::{BreakerConfig, CachePolicy};
use crate::failover_path::balancer::{BalancerConfig, HedgePolicy};

/// Most origins one edge takes.
pub const MAX_ORIGINS: usize = 16;

/// One origin (region) the edge may ask.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct OriginSpec {
    /// Its name in answers (`x-rec-origin`, `Server-Timing`) and `/healthz`.
    pub name: String,
    /// Base URL without a trailing slash.
    pub url: String,
    /// Tier: 1 serves first; a higher number is a standby.
    #[serde(default = "one")]
    pub priority: u32,
    /// Share within its tier.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// How the edge combines its own model with the origin's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Ask the origin under a deadline while the edge model computes; serve
    /// the origin's answer if it arrives in time, else the edge model's.
    OriginFirst,
    /// Serve the edge model; refresh the cache from the origin in the background.
    EdgeFirst,
}

/// Every setting of the edge (module docs list the vars).
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeConfig {
    /// The origins, in configuration order; empty runs edge-only.
    pub origins: Vec<OriginSpec>,
    /// One origin's share of the deadline when another could still be asked, ms.
    pub try_timeout_ms: u64,
    /// Origin selection, ejection cap and hedging.
    pub balancer: BalancerConfig,
    /// Origin-first or edge-first.
    pub strategy: Strategy,
    /// Longest wait on the origin, ms, counted from the request's arrival.
    pub deadline_ms: u64,
    /// Each origin's circuit breaker.
    pub breaker: BreakerConfig,
    /// Freshness windows of cached origin answers.
    pub cache: CachePolicy,
    /// Below this much of the deadline left, the origin is not asked, ms.
    pub min_origin_budget_ms: u64,
    /// Operator-bumped part of every cache key (purges on change).
    pub cache_generation: String,
    /// The edge → origin credential, when set.
    pub origin_secret: Option<String>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            origins: Vec::new(),
            try_timeout_ms: 75,
            balancer: BalancerConfig::default(),
            strategy: Strategy::OriginFirst,
            deadline_ms: 150,
            breaker: BreakerConfig::default(),
            cache: CachePolicy::DEFAULT,
            min_origin_budget_ms: 20,
            cache_generation: "1".into(),
            origin_secret: None,
        }
    }
}

/// A var with a value the edge cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("wrangler.toml [vars] {var} = {value:?}: {reason}")]
pub struct ConfigError {
    /// The var's name.
    pub var: &'static str,
    /// Its value.
    pub value: String,
    /// Why it is refused.
    pub reason: String,
}

fn refuse(var: &'static str, value: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError { var, value: value.into(), reason: reason.into() }
}

/// Shortest `ORIGIN_TRY_MS`, ms: no origin across a network answers sooner,
/// so a smaller share only times every origin out (and blames it).
pub const MIN_TRY_MS: u64 = 10;

/// Shortest `ORIGIN_SECRET` in production, bytes (the origin's own minimum).
pub const MIN_SECRET_BYTES: usize = 16;

/// Checks an origin base URL: `http://` or `https://`, a host (and port),
/// nothing else: a path, query, fragment or user info would be joined with
/// `/v1/recommendations?…` into a URL that silently asks something else.
/// Returns it without a trailing `/`.
fn check_origin_url(url: &str) -> Result<String, String> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).ok_or("url must start with http:// or https://")?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err("url has no host".into());
    }
    if let Some(c) = rest.chars().find(|c| matches!(c, '/' | '?' | '#' | '@') || c.is_whitespace() || c.is_control()) {
        return Err(format!("url must be scheme://host[:port] only (found {c:?}): the edge appends /v1/recommendations itself"));
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Parses and checks `ORIGINS` (module docs).
fn parse_origins(json: &str) -> Result<Vec<OriginSpec>, ConfigError> {
    let bad = |reason: String| refuse("ORIGINS", json, reason);
    let mut origins: Vec<OriginSpec> = serde_json::from_str(json).map_err(|e| bad(format!("not a JSON list of {{name, url, priority, weight}}: {e}")))?;
    if origins.is_empty() || origins.len() > MAX_ORIGINS {
        return Err(bad(format!("{} origins: 1 to {MAX_ORIGINS} are allowed", origins.len())));
    }
    for (i, o) in origins.iter_mut().enumerate() {
        let ok_name = !o.name.is_empty() && o.name.len() <= 32 && o.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok_name {
            return Err(bad(format!("origin {i}: name {:?} must be 1 to 32 of A-Z a-z 0-9 - _", o.name)));
        }
        o.url = check_origin_url(&o.url).map_err(|why| bad(format!("origin {:?}: {why}", o.name)))?;
        if !(1..=100).contains(&o.priority) || !(1..=100).contains(&o.weight) {
            return Err(bad(format!("origin {:?}: priority and weight must be 1 to 100", o.name)));
        }
    }
    for (i, o) in origins.iter().enumerate() {
        if origins[..i].iter().any(|p| p.name == o.name) {
            return Err(bad(format!("origin name {:?} appears twice", o.name)));
        }
    }
    Ok(origins)
}

impl EdgeConfig {
    /// The origins best priority first, then by name: the order the events
    /// queue's consumer delivers in and the catalog sync reads from (work
    /// that wants any one origin, not the balanced one).
    pub fn by_priority(&self) -> Vec<&OriginSpec> {
        let mut origins: Vec<&OriginSpec> = self.origins.iter().collect();
        origins.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.name.cmp(&b.name)));
        origins
    }

    /// Reads the settings through `var(name)`; missing or empty vars take
    /// their defaults.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first var whose value does not parse or is
    /// out of range (deadline 1..=60000 ms, failures ≥ 1, open period ≥ 1 ms).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let d = EdgeConfig::default();
        let get = |name: &'static str| var(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let num = |name: &'static str, default: u64, min: u64, max: u64| -> Result<u64, ConfigError> {
            match get(name) {
                None => Ok(default),
                Some(v) => match v.parse::<u64>() {
                    Ok(n) if (min..=max).contains(&n) => Ok(n),
                    Ok(_) => Err(refuse(name, v, format!("out of range {min}..={max}"))),
                    Err(_) => Err(refuse(name, v, "not a non-negative integer")),
                },
            }
        };
        let strategy = match get("STRATEGY").as_deref() {
            None | Some("origin-first") => Strategy::OriginFirst,
            Some("edge-first") => Strategy::EdgeFirst,
            Some(other) => return Err(refuse("STRATEGY", other, "must be origin-first or edge-first")),
        };
        let origins = match (get("ORIGINS"), get("ORIGIN_URL")) {
            (Some(_), Some(u)) => return Err(refuse("ORIGIN_URL", u, "set ORIGINS or ORIGIN_URL, not both")),
            (Some(json), None) => parse_origins(&json)?,
            (None, Some(u)) => {
                let url = check_origin_url(&u).map_err(|why| refuse("ORIGIN_URL", u.clone(), why))?;
                vec![OriginSpec { name: "origin".into(), url, priority: 1, weight: 1 }]
            }
            (None, None) => Vec::new(),
        };
        let u32_of = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        let breaker = BreakerConfig {
            failure_threshold: u32_of(num("BREAKER_FAILURES", d.breaker.failure_threshold.into(), 1, 1_000)?),
            open_ms: num("BREAKER_OPEN_MS", d.breaker.open_ms, 1, 86_400_000)?,
            backoff: u32_of(num("BREAKER_BACKOFF", d.breaker.backoff.into(), 1, 100)?),
            max_open_ms: num("BREAKER_MAX_OPEN_MS", d.breaker.max_open_ms, 1, 86_400_000)?,
        };
        let cache = CachePolicy {
            max_age_s: num("CACHE_MAX_AGE_S", d.cache.max_age_s, 0, 31_536_000)?,
            stale_while_revalidate_s: num("CACHE_SWR_S", d.cache.stale_while_revalidate_s, 0, 31_536_000)?,
            stale_if_error_s: num("STALE_S", d.cache.stale_if_error_s, 0, 31_536_000)?,
        };
        let deadline_ms = num("ORIGIN_DEADLINE_MS", d.deadline_ms, 1, 60_000)?;
        // Below the deadline: a floor equal to it never asks an origin after any cache lookup.
        let min_origin_budget_ms = num("ORIGIN_MIN_BUDGET_MS", d.min_origin_budget_ms.min(deadline_ms - 1), 0, deadline_ms - 1)?;
        // At least the floor (a share under it is never enough to be asked) and MIN_TRY_MS.
        let try_floor = min_origin_budget_ms.max(MIN_TRY_MS).min(deadline_ms);
        let try_timeout_ms = num("ORIGIN_TRY_MS", (deadline_ms / 2).max(try_floor), try_floor, deadline_ms)?;
        let hedge = HedgePolicy {
            budget_pct: u32_of(num("HEDGE_BUDGET_PCT", d.balancer.hedge.budget_pct.into(), 0, 100)?),
            percentile: u32_of(num("HEDGE_PERCENTILE", d.balancer.hedge.percentile.into(), 50, 99)?),
            min_delay_ms: num("HEDGE_MIN_MS", d.balancer.hedge.min_delay_ms, 0, deadline_ms)?,
        };
        let balancer = BalancerConfig {
            decay_ms: num("LATENCY_DECAY_MS", d.balancer.decay_ms, 1, 3_600_000)?,
            max_ejected_pct: u32_of(num("MAX_EJECTED_PCT", d.balancer.max_ejected_pct.into(), 0, 100)?),
            hedge,
        };
        let cache_generation = get("CACHE_GENERATION").unwrap_or(d.cache_generation);
        let origin_secret = get("ORIGIN_SECRET");
        match get("EDGEREC_ENV").as_deref() {
            None | Some("development") => {}
            Some("production") => {
                let var = if get("ORIGINS").is_some() { "ORIGINS" } else { "ORIGIN_URL" };
                if origins.is_empty() {
                    return Err(refuse(var, "", "production needs an https:// origin"));
                }
                if let Some(o) = origins.iter().find(|o| !o.url.starts_with("https://")) {
                    return Err(refuse(var, o.url.clone(), "production needs https:// origins"));
                }
                match &origin_secret {
                    None => {
                        return Err(refuse("ORIGIN_SECRET", "", "production needs the edge credential: wrangler secret put ORIGIN_SECRET --env production"));
                    }
                    Some(s) if s.len() < MIN_SECRET_BYTES => {
                        return Err(refuse("ORIGIN_SECRET", "(hidden)", format!("{} bytes; production needs at least {MIN_SECRET_BYTES}", s.len())));
                    }
                    Some(_) => {}
                }
            }
            Some(other) => return Err(refuse("EDGEREC_ENV", other, "must be development or production")),
        }
        Ok(EdgeConfig { origins, try_timeout_ms, balancer, strategy, deadline_ms, breaker, cache, min_origin_budget_ms, cache_generation, origin_secret })
    }

    /// How long the Cache API should keep an entry, s: as long as any window uses it.
    pub fn cache_ttl_s(&self) -> u64 {
        (self.cache.max_age_s + self.cache.stale_while_revalidate_s).max(self.cache.stale_if_error_s).max(1)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn missing_vars_take_the_documented_defaults() {
        assert_eq!(EdgeConfig::from_vars(vars(&[])).unwrap(), EdgeConfig::default());
        assert_eq!(EdgeConfig::default().deadline_ms, 150);
        assert_eq!(EdgeConfig::default().breaker.failure_threshold, 5);
        assert_eq!(EdgeConfig::default().breaker.open_ms, 30_000);
    }

    #[test]
    fn vars_override_and_urls_lose_their_trailing_slash() {
        let c = EdgeConfig::from_vars(vars(&[
            ("ORIGIN_URL", "http://127.0.0.1:8080/"),
            ("STRATEGY", "edge-first"),
            ("ORIGIN_DEADLINE_MS", "80"),
            ("BREAKER_FAILURES", "2"),
            ("STALE_S", "10"),
        ]))
        .unwrap();
        assert_eq!(c.origins, vec![OriginSpec { name: "origin".into(), url: "http://127.0.0.1:8080".into(), priority: 1, weight: 1 }]);
        assert_eq!(c.try_timeout_ms, 40, "half the deadline by default");
        assert_eq!((c.strategy, c.deadline_ms, c.breaker.failure_threshold, c.cache.stale_if_error_s), (Strategy::EdgeFirst, 80, 2, 10));
        assert_eq!(c.cache_ttl_s(), 120, "max-age + swr outlives a 10 s stale-if-error window");
    }

    #[test]
    fn bad_values_name_their_var() {
        assert_eq!(EdgeConfig::from_vars(vars(&[("ORIGIN_DEADLINE_MS", "soon")])).unwrap_err().var, "ORIGIN_DEADLINE_MS");
        assert_eq!(EdgeConfig::from_vars(vars(&[("ORIGIN_DEADLINE_MS", "0")])).unwrap_err().var, "ORIGIN_DEADLINE_MS");
        assert_eq!(EdgeConfig::from_vars(vars(&[("BREAKER_FAILURES", "0")])).unwrap_err().var, "BREAKER_FAILURES");
        assert_eq!(EdgeConfig::from_vars(vars(&[("STRATEGY", "random")])).unwrap_err().var, "STRATEGY");
        assert_eq!(EdgeConfig::from_vars(vars(&[("ORIGIN_URL", "ftp://x")])).unwrap_err().var, "ORIGIN_URL");
        assert_eq!(EdgeConfig::from_vars(vars(&[("ORIGIN_MIN_BUDGET_MS", "200")])).unwrap_err().var, "ORIGIN_MIN_BUDGET_MS", "above the deadline");
    }

    #[test]
    fn origins_are_a_json_list_with_checked_names() {
        let c = EdgeConfig::from_vars(vars(&[(
            "ORIGINS",
            r#"[{"name": "eu-west", "url": "https://eu.example/", "priority": 1},
                {"name": "us_east", "url": "https://us.example", "priority": 2, "weight": 3}]"#,
        )]))
        .unwrap();
        assert_eq!(c.origins.len(), 2);
        assert_eq!((c.origins[0].url.as_str(), c.origins[0].weight), ("https://eu.example", 1));
        assert_eq!((c.origins[1].priority, c.origins[1].weight), (2, 3));
        for (bad, says) in [
            ("[]", "1 to 16"),
            ("{\"name\": \"a\"}", "JSON list"),
            (r#"[{"name": "a b", "url": "https://x"}]"#, "name"),
            (r#"[{"name": "a", "url": "ftp://x"}]"#, "url"),
            (r#"[{"name": "a", "url": "https://x", "priority": 0}]"#, "priority"),
            (r#"[{"name": "a", "url": "https://x"}, {"name": "a", "url": "https://y"}]"#, "twice"),
            (r#"[{"name": "a", "url": "https://x", "region": "eu"}]"#, "unknown field"),
        ] {
            let e = EdgeConfig::from_vars(vars(&[("ORIGINS", bad)])).unwrap_err();
            assert_eq!(e.var, "ORIGINS", "{bad}");
            assert!(e.reason.contains(says), "{bad}: {e}");
        }
        let both = EdgeConfig::from_vars(vars(&[("ORIGINS", r#"[{"name": "a", "url": "https://x"}]"#), ("ORIGIN_URL", "https://y")]));
        assert_eq!(both.unwrap_err().var, "ORIGIN_URL");
        let prod = vars(&[
            ("EDGEREC_ENV", "production"),
            ("ORIGIN_SECRET", "s"),
            ("ORIGINS", r#"[{"name": "a", "url": "https://x"}, {"name": "b", "url": "http://y"}]"#),
        ]);
        assert_eq!(EdgeConfig::from_vars(prod).unwrap_err().var, "ORIGINS", "production refuses any http:// region");
    }

    /// Hardening round 2, item 15: configurations that deployed silently wrong.
    #[test]
    fn settings_that_would_run_silently_wrong_are_refused() {
        let e = |pairs: &[(&str, &str)]| EdgeConfig::from_vars(vars(pairs)).unwrap_err();
        assert_eq!(e(&[("ORIGIN_MIN_BUDGET_MS", "150")]).var, "ORIGIN_MIN_BUDGET_MS", "a floor equal to the deadline never asks");
        assert_eq!(e(&[("ORIGIN_TRY_MS", "1")]).var, "ORIGIN_TRY_MS", "a 1 ms share times every origin out");
        assert_eq!(e(&[("ORIGIN_TRY_MS", "15")]).var, "ORIGIN_TRY_MS", "under the 20 ms floor");
        assert!(EdgeConfig::from_vars(vars(&[("ORIGIN_TRY_MS", "20")])).is_ok());
        for url in ["https://origin.example/api", "https://origin.example?x=1", "https://origin.example#f", "https://user@origin.example", "https://"] {
            assert_eq!(e(&[("ORIGIN_URL", url)]).var, "ORIGIN_URL", "{url}");
            let json = format!(r#"[{{"name": "a", "url": "{url}"}}]"#);
            assert_eq!(e(&[("ORIGINS", &json)]).var, "ORIGINS", "{url}");
        }
        let c = EdgeConfig::from_vars(vars(&[("ORIGIN_URL", "https://origin.example:8443/")])).unwrap();
        assert_eq!(c.origins[0].url, "https://origin.example:8443");
        let prod = [("EDGEREC_ENV", "production"), ("ORIGIN_URL", "https://origin.example"), ("ORIGIN_SECRET", "short")];
        assert_eq!(e(&prod).var, "ORIGIN_SECRET", "a guessable credential");
        let d = EdgeConfig::from_vars(vars(&[("ORIGIN_DEADLINE_MS", "10")])).unwrap();
        assert!(d.min_origin_budget_ms < d.deadline_ms && d.try_timeout_ms <= d.deadline_ms, "{d:?}");
    }

    /// Hardening 17: production refuses the local defaults.
    #[test]
    fn production_needs_an_https_origin_and_the_credential() {
        let prod = |extra: &[(&str, &str)]| {
            let mut v = vec![("EDGEREC_ENV", "production")];
            v.extend_from_slice(extra);
            EdgeConfig::from_vars(vars(&v))
        };
        assert_eq!(prod(&[]).unwrap_err().var, "ORIGIN_URL");
        assert_eq!(prod(&[("ORIGIN_URL", "http://127.0.0.1:8080"), ("ORIGIN_SECRET", "s")]).unwrap_err().var, "ORIGIN_URL");
        assert_eq!(prod(&[("ORIGIN_URL", "https://origin.shop.example")]).unwrap_err().var, "ORIGIN_SECRET");
        let ok = prod(&[("ORIGIN_URL", "https://origin.shop.example"), ("ORIGIN_SECRET", "s3cret-0123456789")]).unwrap();
        assert_eq!(ok.origin_secret.as_deref(), Some("s3cret-0123456789"));
        assert!(EdgeConfig::from_vars(vars(&[("ORIGIN_URL", "http://127.0.0.1:8080")])).is_ok(), "development keeps the local default");
    }
}
