//! What an origin call's failure says about the origin, kept apart from the
//! reasons an origin was not asked at all: only an [`OriginFailure`] can
//! count against an origin (its circuit breaker, its outlier ejection); a
//! [`NotAsked`] never does.

/// Why an origin that was asked gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginFailure {
    /// No answer within the attempt's deadline, ms (the request was aborted).
    #[error("no answer within the {0} ms deadline")]
    Timeout(u64),
    /// Connection refused, reset, DNS, …
    #[error("network error: {0}")]
    Network(String),
    /// An HTTP status other than 200.
    #[error("HTTP {0}")]
    Status(u16),
    /// 200 with a body that is not a valid answer to the request: truncated,
    /// malformed, or failing [`crate::origin_answer::check`].
    #[error("malformed answer: {0}")]
    Malformed(String),
}

/// What an [`OriginFailure`] says about the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The origin is unwell or unusable: counts toward opening its breaker.
    AgainstOrigin,
    /// The origin is up and refused this request: neither opens nor closes its breaker.
    Refused,
}

impl OriginFailure {
    /// How the failure counts (a decision per case, documented in the edge README):
    ///
    /// * timeouts, network errors, invalid answers, 5xx, 408 → against the origin;
    /// * 404, 401, 403, 405, 410 and any other status → against the origin: an
    ///   origin URL with a wrong path, or a WAF in front of it, is an origin
    ///   that cannot answer;
    /// * 429 → refused: the origin sheds load on purpose, an outage it is not;
    /// * 400, 413, 414, 415, 422, 431 → refused: the origin (or a proxy in
    ///   front of it) disagrees with the request itself — its size or a rule
    ///   the edge checks the same way (version skew) — it is not down. A
    ///   stranger can send such requests at will, so they must never eject
    ///   an origin (hardening round 2, item 1).
    pub fn class(&self) -> FailureClass {
        match self {
            OriginFailure::Status(400 | 413 | 414 | 415 | 422 | 429 | 431) => FailureClass::Refused,
            _ => FailureClass::AgainstOrigin,
        }
    }

    /// Whether the failure counts toward opening the origin's breaker.
    pub fn counts_against_origin(&self) -> bool {
        self.class() == FailureClass::AgainstOrigin
    }

    /// A short word for `Server-Timing` descriptions and logs.
    pub fn short(&self) -> String {
        match self {
            OriginFailure::Timeout(_) => "timeout".into(),
            OriginFailure::Network(_) => "network".into(),
            OriginFailure::Status(s) => format!("http-{s}"),
            OriginFailure::Malformed(_) => "malformed".into(),
        }
    }
}

/// Why no origin was asked for this request. Never counts against an origin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAsked {
    /// Every origin's circuit breaker is open (ejected), or its half-open
    /// probe is already out, or it is at its ramp's in-flight cap.
    #[error("circuit breaker open for every origin")]
    BreakerOpen,
    /// The only origins left are half-open: their probe goes in the
    /// background ([`super::FollowUp::Probe`]) and this shopper does not wait on it.
    #[error("circuit breaker half-open, probing in the background")]
    ProbingInBackground,
    /// The request is too large for any origin to accept in either form
    /// ([`crate::request::OriginForm::TooLarge`]): asking would only earn a
    /// refusal, and the request, not the origin, is to blame.
    #[error("request too large to forward to an origin")]
    TooLarge,
    /// Too little of the request's deadline was left when an origin could be
    /// asked (a slow cache lookup): not the origin's fault.
    #[error("deadline spent before the origin was asked")]
    DeadlineSpent,
}

/// Why the origins' answer was not used: the last failure of the origins
/// that were asked, or why none was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unanswered {
    /// Origin `origin` (its name) was the last one asked and failed.
    #[error("{origin}: {failure}")]
    Failed {
        /// The origin's name.
        origin: String,
        /// Its failure.
        failure: OriginFailure,
    },
    /// No origin was asked.
    #[error("{0}")]
    NotAsked(NotAsked),
}

impl Unanswered {
    /// The origin failure, when one was asked.
    pub fn failure(&self) -> Option<&OriginFailure> {
        match self {
            Unanswered::Failed { failure, .. } => Some(failure),
            Unanswered::NotAsked(_) => None,
        }
    }

    /// Whether an origin was asked and failed in a way that counts against it.
    pub fn counts_against_origin(&self) -> bool {
        self.failure().is_some_and(OriginFailure::counts_against_origin)
    }
}

impl From<NotAsked> for Unanswered {
    fn from(n: NotAsked) -> Self {
        Unanswered::NotAsked(n)
    }
}
