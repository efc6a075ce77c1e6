//! The edge worker's settings, read from `wrangler.toml` `[vars]` (or any
//! name → value lookup, so they are tested natively).
//!
//! | var | default | meaning |
//! |---|---|---|
//! | `ORIGIN_URL` | none (edge-only) | origin base URL, e.g. `http://127.0.0.1:8080` |
//! | `STRATEGY` | `origin-first` | `origin-first` or `edge-first` |
//! | `ORIGIN_DEADLINE_MS` | 150 | longest wait on the origin, ms, counted from the request's arrival (cache lookup included) |
//! | `ORIGIN_MIN_BUDGET_MS` | 20 | when less of the deadline is left after the cache lookup, the origin is not asked (and not blamed), ms |
//! | `BREAKER_FAILURES` | 5 | consecutive failures that open the breaker |
//! | `BREAKER_OPEN_MS` | 30000 | first open period, ms |
//! | `BREAKER_BACKOFF` | 2 | open period growth per consecutive trip |
//! | `BREAKER_MAX_OPEN_MS` | 300000 | longest open period, ms |
//! | `CACHE_MAX_AGE_S` | 60 | a cached origin answer is fresh this long, s |
//! | `CACHE_SWR_S` | 60 | then served while revalidating this long (RFC 5861), s |
//! | `STALE_S` | 86400 | served on error up to this age (RFC 5861 stale-if-error), s |
//! | `CACHE_GENERATION` | `1` | part of every cache key: bump it to purge all cached answers |
//! | `EDGEREC_ENV` | `development` | `production` refuses an origin that is not `https://` or has no `ORIGIN_SECRET` |
//!
//! `ORIGIN_SECRET` (a secret: `wrangler secret put ORIGIN_SECRET`) is the
//! credential the edge sends the origin in `x-edgerec-edge-key`.

use crate::failover::{BreakerConfig, CachePolicy};

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
    /// Origin base URL without a trailing slash; `None` runs edge-only.
    pub origin_url: Option<String>,
    /// Origin-first or edge-first.
    pub strategy: Strategy,
    /// Longest wait on the origin, ms, counted from the request's arrival.
    pub deadline_ms: u64,
    /// Circuit breaker around origin calls.
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
            origin_url: None,
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
    pub reason: &'static str,
}

impl EdgeConfig {
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
                    Ok(_) => Err(ConfigError { var: name, value: v, reason: "out of range" }),
                    Err(_) => Err(ConfigError { var: name, value: v, reason: "not a non-negative integer" }),
                },
            }
        };
        let strategy = match get("STRATEGY").as_deref() {
            None | Some("origin-first") => Strategy::OriginFirst,
            Some("edge-first") => Strategy::EdgeFirst,
            Some(other) => return Err(ConfigError { var: "STRATEGY", value: other.into(), reason: "must be origin-first or edge-first" }),
        };
        let origin_url = match get("ORIGIN_URL") {
            None => None,
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => Some(u.trim_end_matches('/').to_string()),
            Some(u) => return Err(ConfigError { var: "ORIGIN_URL", value: u, reason: "must start with http:// or https://" }),
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
        let min_origin_budget_ms = num("ORIGIN_MIN_BUDGET_MS", d.min_origin_budget_ms, 0, deadline_ms)?;
        let cache_generation = get("CACHE_GENERATION").unwrap_or(d.cache_generation);
        let origin_secret = get("ORIGIN_SECRET");
        match get("EDGEREC_ENV").as_deref() {
            None | Some("development") => {}
            Some("production") => {
                let Some(url) = &origin_url else {
                    return Err(ConfigError { var: "ORIGIN_URL", value: String::new(), reason: "production needs an https:// origin" });
                };
                if !url.starts_with("https://") {
                    return Err(ConfigError { var: "ORIGIN_URL", value: url.clone(), reason: "production needs an https:// origin" });
                }
                if origin_secret.is_none() {
                    return Err(ConfigError {
                        var: "ORIGIN_SECRET",
                        value: String::new(),
                        reason: "production needs the edge credential: wrangler secret put ORIGIN_SECRET --env production",
                    });
                }
            }
            Some(other) => return Err(ConfigError { var: "EDGEREC_ENV", value: other.into(), reason: "must be development or production" }),
        }
        Ok(EdgeConfig { origin_url, strategy, deadline_ms, breaker, cache, min_origin_budget_ms, cache_generation, origin_secret })
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
        assert_eq!(c.origin_url.as_deref(), Some("http://127.0.0.1:8080"));
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
        let ok = prod(&[("ORIGIN_URL", "https://origin.shop.example"), ("ORIGIN_SECRET", "s3cret")]).unwrap();
        assert_eq!(ok.origin_secret.as_deref(), Some("s3cret"));
        assert!(EdgeConfig::from_vars(vars(&[("ORIGIN_URL", "http://127.0.0.1:8080")])).is_ok(), "development keeps the local default");
    }
}
