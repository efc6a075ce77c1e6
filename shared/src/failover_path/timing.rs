//! Where a request's time went, for the `Server-Timing` header (W3C Server
//! Timing): the cache lookup, each origin attempt by origin name, the edge
//! model, the whole path.

use super::failure::OriginFailure;

/// How one origin attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    /// A valid answer, served.
    Answered,
    /// Failed ([`OriginFailure`]).
    Failed(OriginFailure),
    /// Still running when another origin's answer won; aborted.
    Abandoned,
}

/// One origin asked during a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The origin's name.
    pub origin: String,
    /// From sending to its end, ms.
    pub ms: u64,
    /// Whether it was a hedged request (sent while another was still out).
    pub hedge: bool,
    /// How it ended.
    pub result: AttemptResult,
}

impl Attempt {
    fn desc(&self) -> String {
        let what = match &self.result {
            AttemptResult::Answered => "ok".to_string(),
            AttemptResult::Failed(f) => f.short(),
            AttemptResult::Abandoned => "abandoned".to_string(),
        };
        if self.hedge { format!("hedge {what}") } else { what }
    }
}

/// Durations for `Server-Timing`, ms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timing {
    /// Edge model compute, when it ran.
    pub edge_ms: Option<u64>,
    /// The origin phase: from the first attempt to the answer (or to the
    /// last failure), when any origin was asked.
    pub origin_ms: Option<u64>,
    /// Cache lookup, when it ran.
    pub cache_ms: Option<u64>,
    /// The whole path.
    pub total_ms: u64,
    /// The name of the origin whose answer was served, if one was.
    pub served_by: Option<String>,
    /// Every origin attempt, in start order.
    pub attempts: Vec<Attempt>,
}

impl Timing {
    /// The `Server-Timing` header value, e.g.
    /// `cache;dur=0, origin;dur=12;desc="eu", try-eu;dur=12;desc="ok", edge;dur=3, total;dur=15`.
    /// Origin names are tokens ([`crate::edge_config::OriginSpec`] checks them).
    pub fn header(&self) -> String {
        let mut parts = Vec::new();
        if let Some(d) = self.cache_ms {
            parts.push(format!("cache;dur={d}"));
        }
        if let Some(d) = self.origin_ms {
            let by = self.served_by.as_deref().unwrap_or("none");
            parts.push(format!("origin;dur={d};desc=\"{by}\""));
        }
        for a in &self.attempts {
            parts.push(format!("try-{};dur={};desc=\"{}\"", a.origin, a.ms, a.desc()));
        }
        if let Some(d) = self.edge_ms {
            parts.push(format!("edge;dur={d}"));
        }
        parts.push(format!("total;dur={}", self.total_ms));
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_the_serving_origin_and_every_attempt() {
        let t = Timing {
            edge_ms: Some(3),
            origin_ms: Some(30),
            cache_ms: Some(0),
            total_ms: 31,
            served_by: Some("us".into()),
            attempts: vec![
                Attempt { origin: "eu".into(), ms: 30, hedge: false, result: AttemptResult::Abandoned },
                Attempt { origin: "us".into(), ms: 9, hedge: true, result: AttemptResult::Answered },
            ],
        };
        assert_eq!(
            t.header(),
            "cache;dur=0, origin;dur=30;desc=\"us\", try-eu;dur=30;desc=\"abandoned\", try-us;dur=9;desc=\"hedge ok\", edge;dur=3, total;dur=31"
        );
        assert_eq!(Timing { total_ms: 2, ..Timing::default() }.header(), "total;dur=2");
    }
}
