//! When a failed request to a provider is sent again, and how long to wait first.
//!
//! The decision is pure: the policy, how many attempts were made, what went wrong and a random
//! number in; `Next` out. `Connection::send` does the waiting and the sending. A request is only
//! retried before its response head was accepted, so no output has reached anyone yet; once a
//! stream has begun, a failure ends the request and the pipeline decides what comes next.
//!
//! Waits use "full jitter" (a uniform random delay below an exponentially growing cap), so that
//! many clients rejected together do not come back together. A provider's own `Retry-After` (or
//! `retry-after-ms`) is obeyed exactly instead, unless it asks for longer than the policy's
//! `max_retry_after`: then the request fails at once as overloaded, so that the pipeline can fall
//! back to another backend rather than hold the user for minutes.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime};

/// How requests to one provider are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included: 1 means never retry, 0 is treated as 1.
    pub max_attempts: u32,
    /// The cap on the first backoff; each later retry doubles it.
    pub base_delay: Duration,
    /// The cap on any backoff.
    pub max_delay: Duration,
    /// The longest `Retry-After` that is waited out. A provider asking for more gets no retry:
    /// the request fails at once as overloaded.
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    /// 3 attempts, backoff from 200 ms up to 5 s, `Retry-After` obeyed up to 20 s.
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(5),
        max_retry_after: Duration::from_secs(20),
    };

    /// One attempt and no retry.
    pub const fn none() -> Self {
        RetryPolicy { max_attempts: 1, ..Self::DEFAULT }
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What went wrong with one attempt, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The provider answered with a non-success status, and perhaps how long to wait.
    Status { status: u16, retry_after: Option<Duration> },
    /// No connection could be made (refused, reset, or the connect timeout).
    Connect,
    /// Connected, but no response head arrived within the read timeout.
    Timeout,
    /// Anything else (a TLS certificate problem, a request that could not be written): sending
    /// the same request again would fail the same way.
    Other,
}

/// What `Connection::send` does after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Send the request again after this wait.
    Retry(Duration),
    /// Report the failure.
    GiveUp,
    /// The provider asked to wait this long, more than `max_retry_after`: report it as
    /// overloaded now.
    WaitTooLong(Duration),
}

/// Statuses that another attempt may fix: request timeout, rate limit, server errors, gateway
/// errors, and 529 (overloaded, as Anthropic sends it).
pub(crate) fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504 | 529)
}

/// Decides what follows a failed attempt. `attempts` is how many were made, this one included;
/// `random` is any uniformly random number, used for the jitter.
pub(crate) fn next(policy: &RetryPolicy, attempts: u32, outcome: Outcome, random: u64) -> Next {
    let retry_after = match outcome {
        Outcome::Status { status, retry_after } if retryable_status(status) => retry_after,
        Outcome::Connect | Outcome::Timeout => None,
        Outcome::Status { .. } | Outcome::Other => return Next::GiveUp,
    };
    if let Some(wait) = retry_after {
        if wait > policy.max_retry_after {
            return Next::WaitTooLong(wait);
        }
    }
    if attempts >= policy.max_attempts {
        return Next::GiveUp;
    }
    Next::Retry(retry_after.unwrap_or_else(|| backoff(policy, attempts, random)))
}

/// The full-jitter wait before retry number `retry` (1 for the first): uniform in
/// `[0, min(max_delay, base_delay * 2^(retry - 1)))`.
pub(crate) fn backoff(policy: &RetryPolicy, retry: u32, random: u64) -> Duration {
    let doublings = retry.saturating_sub(1).min(31);
    let cap = policy.base_delay.saturating_mul(1 << doublings).min(policy.max_delay);
    // `random / 2^64` is uniform in [0, 1); the product fits easily in u128.
    let nanos = (cap.as_nanos().saturating_mul(u128::from(random))) >> 64;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The wait a provider asked for, from `retry-after-ms` (milliseconds, sent by OpenAI and Azure)
/// or else `Retry-After` (delta-seconds, or an HTTP-date measured from `now`). A date in the past
/// means no wait. Values that are neither are ignored, and the ordinary backoff applies.
pub(crate) fn retry_after(
    retry_after_ms: Option<&str>,
    retry_after: Option<&str>,
    now: SystemTime,
) -> Option<Duration> {
    if let Some(ms) = retry_after_ms.and_then(parse_number) {
        return Some(seconds(ms / 1000.0));
    }
    let value = retry_after?.trim();
    if let Some(secs) = parse_number(value) {
        return Some(seconds(secs));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A non-negative decimal number written with digits and at most one point: no sign, exponent,
/// `inf` or `NaN`, which `f64::from_str` would accept.
fn parse_number(text: &str) -> Option<f64> {
    let text = text.trim();
    let mut points = 0;
    let valid = !text.is_empty()
        && text.bytes().all(|b| match b {
            b'0'..=b'9' => true,
            b'.' => {
                points += 1;
                points == 1
            }
            _ => false,
        })
        && text.bytes().any(|b| b.is_ascii_digit());
    if !valid {
        return None;
    }
    text.parse().ok()
}

/// Seconds as a duration; a number too large for one is as good as forever.
fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
}

/// A random number for the jitter. `RandomState` is seeded from the operating system once per
/// thread and then varied per instance, which is plenty for spreading retries; no crate needed.
pub(crate) fn random() -> u64 {
    RandomState::new().build_hasher().finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy::DEFAULT;

    fn status(status: u16) -> Outcome {
        Outcome::Status { status, retry_after: None }
    }

    #[test]
    fn the_defaults_are_the_documented_ones() {
        assert_eq!(RetryPolicy::default().max_attempts, 3);
        assert_eq!(RetryPolicy::default().base_delay, Duration::from_millis(200));
        assert_eq!(RetryPolicy::default().max_delay, Duration::from_secs(5));
        assert_eq!(RetryPolicy::default().max_retry_after, Duration::from_secs(20));
        assert_eq!(RetryPolicy::none().max_attempts, 1);
    }

    #[test]
    fn only_transient_failures_are_retried() {
        for code in [408, 429, 500, 502, 503, 504, 529] {
            assert!(matches!(next(&POLICY, 1, status(code), 0), Next::Retry(_)), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 413, 422, 501, 505] {
            assert_eq!(next(&POLICY, 1, status(code), 0), Next::GiveUp, "{code}");
        }
        assert!(matches!(next(&POLICY, 1, Outcome::Connect, 0), Next::Retry(_)));
        assert!(matches!(next(&POLICY, 1, Outcome::Timeout, 0), Next::Retry(_)));
        assert_eq!(next(&POLICY, 1, Outcome::Other, 0), Next::GiveUp);
    }

    #[test]
    fn attempts_stop_at_the_maximum() {
        assert!(matches!(next(&POLICY, 2, status(500), 0), Next::Retry(_)));
        assert_eq!(next(&POLICY, 3, status(500), 0), Next::GiveUp);
        assert_eq!(next(&RetryPolicy::none(), 1, Outcome::Connect, 0), Next::GiveUp);
        let zero = RetryPolicy { max_attempts: 0, ..POLICY };
        assert_eq!(next(&zero, 1, status(503), 0), Next::GiveUp);
    }

    #[test]
    fn retry_after_is_obeyed_exactly_or_ends_the_request() {
        let asked = |secs| Outcome::Status { status: 429, retry_after: Some(Duration::from_secs(secs)) };
        assert_eq!(next(&POLICY, 1, asked(1), u64::MAX), Next::Retry(Duration::from_secs(1)));
        assert_eq!(next(&POLICY, 1, asked(20), 0), Next::Retry(Duration::from_secs(20)));
        assert_eq!(next(&POLICY, 1, asked(21), 0), Next::WaitTooLong(Duration::from_secs(21)));
        // Even on the last attempt a long wait is reported as such.
        assert_eq!(next(&POLICY, 3, asked(3600), 0), Next::WaitTooLong(Duration::from_secs(3600)));
        // A 400 with Retry-After is still not retried.
        let bad = Outcome::Status { status: 400, retry_after: Some(Duration::from_secs(1)) };
        assert_eq!(next(&POLICY, 1, bad, 0), Next::GiveUp);
    }

    #[test]
    fn jitter_stays_below_the_doubling_cap() {
        let ms = |d: Duration| d.as_millis();
        // The extremes of the random number give the extremes of the range.
        assert_eq!(backoff(&POLICY, 1, 0), Duration::ZERO);
        assert_eq!(ms(backoff(&POLICY, 1, u64::MAX)), 199);
        assert_eq!(ms(backoff(&POLICY, 2, u64::MAX)), 399);
        assert_eq!(ms(backoff(&POLICY, 3, u64::MAX)), 799);
        assert_eq!(ms(backoff(&POLICY, 6, u64::MAX)), 4999);
        assert_eq!(ms(backoff(&POLICY, 40, u64::MAX)), 4999);
        assert_eq!(ms(backoff(&POLICY, 2, u64::MAX / 2)), 199);
        // Real randomness: always inside the bound, and not always the same.
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let delay = backoff(&POLICY, 3, random());
            assert!(delay < Duration::from_millis(800), "{delay:?}");
            seen.insert(delay);
        }
        assert!(seen.len() > 100, "{}", seen.len());
        let huge = RetryPolicy { base_delay: Duration::MAX, max_delay: Duration::MAX, ..POLICY };
        // No overflow, however large the numbers.
        assert!(backoff(&huge, 40, u64::MAX) > Duration::from_secs(365 * 24 * 3600));
    }

    #[test]
    fn retry_after_values_are_parsed() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21 07:28:00 GMT
        let parse = |ms: Option<&str>, header: Option<&str>| retry_after(ms, header, now);
        assert_eq!(parse(None, Some("1")), Some(Duration::from_secs(1)));
        assert_eq!(parse(None, Some(" 120 ")), Some(Duration::from_secs(120)));
        assert_eq!(parse(None, Some("0.5")), Some(Duration::from_millis(500)));
        assert_eq!(parse(None, Some("Wed, 21 Oct 2015 07:28:30 GMT")), Some(Duration::from_secs(30)));
        assert_eq!(parse(None, Some("Wed, 21 Oct 2015 07:00:00 GMT")), Some(Duration::ZERO));
        assert_eq!(parse(Some("1500"), Some("2")), Some(Duration::from_millis(1500)));
        assert_eq!(parse(Some("soon"), Some("2")), Some(Duration::from_secs(2)));
        assert_eq!(parse(None, Some("99999999999999999999999")), Some(Duration::MAX));
        for junk in ["", "-1", "1e3", "inf", "NaN", "1.2.3", ".", "soon", "+5"] {
            assert_eq!(parse(None, Some(junk)), None, "{junk:?}");
        }
        assert_eq!(parse(None, None), None);
    }
}
