//! `[limits]` (per-key rate and concurrency limits, request and stream time limits, the
//! per-address throttle on failed authentication) and the TLS keys of `[server]`: the raw serde
//! forms and their validation. Errors name the key.

use std::path::PathBuf;

use serde::Deserialize;

/// Validated `[limits]`. A value of 0 in `requests_per_minute`, `max_concurrent_requests` or
/// `auth_failures_per_minute` turns that limit off; the time limits are always on.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Sustained requests per minute per key (token-bucket refill rate); 0 = no rate limit.
    pub requests_per_minute: u32,
    /// Requests a key may send at once after being idle (the bucket's size).
    pub burst: u32,
    /// Requests per key in flight at the same time (a stream counts until it ends); 0 = none.
    pub max_concurrent_requests: u32,
    /// Time until a response starts (for a non-streaming request: the whole response).
    pub request_timeout_seconds: u64,
    /// Total time of a streamed (SSE) response, from the request's arrival.
    pub stream_timeout_seconds: u64,
    /// Buckets kept in memory at most, by the rate limit and by the failed-authentication
    /// throttle each; idle (full) buckets are dropped first.
    pub max_tracked_keys: usize,
    /// Failed authentications (401) per minute per client address (refill rate of the address's
    /// bucket); past the burst, requests from the address that fail are answered 429 without
    /// an audit record each. 0 = no throttle.
    pub auth_failures_per_minute: u32,
    /// Failed authentications an address may make at once (the bucket's size).
    pub auth_failure_burst: u32,
}

/// `[server] tls_cert` and `tls_key`: PEM files for HTTPS on the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// The certificate chain, leaf first (PEM).
    pub cert: PathBuf,
    /// The private key of the leaf certificate (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Default for Limits {
    fn default() -> Self {
        // Generous: a person or a small team behind one key never meets these; a runaway
        // script does. The time limits leave room for a long answer from the embedded model.
        Limits {
            requests_per_minute: 600,
            burst: 100,
            max_concurrent_requests: 16,
            request_timeout_seconds: 300,
            stream_timeout_seconds: 900,
            max_tracked_keys: 10_000,
            // A person who mistypes a key a few times never meets this; a script guessing keys
            // does after 20 tries, then gets 10 more a minute.
            auth_failures_per_minute: 10,
            auth_failure_burst: 20,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    requests_per_minute: Option<u32>,
    burst: Option<u32>,
    max_concurrent_requests: Option<u32>,
    request_timeout_seconds: Option<u64>,
    stream_timeout_seconds: Option<u64>,
    max_tracked_keys: Option<usize>,
    auth_failures_per_minute: Option<u32>,
    auth_failure_burst: Option<u32>,
}

impl RawLimits {
    /// `Err((key, reason))` names the offending key.
    pub(crate) fn validate(self) -> Result<Limits, (String, String)> {
        let d = Limits::default();
        let err = |key: &str, reason: &str| (format!("limits.{key}"), reason.to_string());
        let requests_per_minute = self.requests_per_minute.unwrap_or(d.requests_per_minute);
        if requests_per_minute > 1_000_000 {
            return Err(err("requests_per_minute", "must be at most 1000000 (0 turns the rate limit off)"));
        }
        let burst = self.burst.unwrap_or(if self.requests_per_minute.is_some() {
            // A stated rate without a burst: allow a tenth of a minute's worth at once.
            (requests_per_minute / 10).max(1)
        } else {
            d.burst
        });
        if requests_per_minute > 0 && !(1..=1_000_000).contains(&burst) {
            return Err(err("burst", "must be between 1 and 1000000"));
        }
        let max_concurrent_requests = self.max_concurrent_requests.unwrap_or(d.max_concurrent_requests);
        if max_concurrent_requests > 100_000 {
            return Err(err("max_concurrent_requests", "must be at most 100000 (0 turns the limit off)"));
        }
        let request_timeout_seconds = self.request_timeout_seconds.unwrap_or(d.request_timeout_seconds);
        if !(1..=86_400).contains(&request_timeout_seconds) {
            return Err(err("request_timeout_seconds", "must be between 1 and 86400"));
        }
        let stream_timeout_seconds = self.stream_timeout_seconds.unwrap_or(d.stream_timeout_seconds);
        if !(1..=86_400).contains(&stream_timeout_seconds) {
            return Err(err("stream_timeout_seconds", "must be between 1 and 86400"));
        }
        let max_tracked_keys = self.max_tracked_keys.unwrap_or(d.max_tracked_keys);
        if !(1..=10_000_000).contains(&max_tracked_keys) {
            return Err(err("max_tracked_keys", "must be between 1 and 10000000"));
        }
        let auth_failures_per_minute = self.auth_failures_per_minute.unwrap_or(d.auth_failures_per_minute);
        if auth_failures_per_minute > 1_000_000 {
            return Err(err(
                "auth_failures_per_minute",
                "must be at most 1000000 (0 turns the failed-authentication throttle off)",
            ));
        }
        let auth_failure_burst = self.auth_failure_burst.unwrap_or(d.auth_failure_burst);
        if auth_failures_per_minute > 0 && !(1..=1_000_000).contains(&auth_failure_burst) {
            return Err(err(
                "auth_failure_burst",
                "must be between 1 and 1000000 (set auth_failures_per_minute = 0 to turn the throttle off)",
            ));
        }
        Ok(Limits {
            requests_per_minute,
            burst,
            max_concurrent_requests,
            request_timeout_seconds,
            stream_timeout_seconds,
            max_tracked_keys,
            auth_failures_per_minute,
            auth_failure_burst,
        })
    }
}

/// Both TLS keys or neither: a certificate without its key (or the reverse) is a mistake that
/// would otherwise serve plain HTTP.
pub(crate) fn validate_tls(cert: Option<PathBuf>, key: Option<PathBuf>) -> Result<Option<Tls>, (String, String)> {
    match (cert, key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => {
            if cert.as_os_str().is_empty() {
                return Err(("server.tls_cert".into(), "is empty; give the path of a PEM certificate file".into()));
            }
            if key.as_os_str().is_empty() {
                return Err(("server.tls_key".into(), "is empty; give the path of a PEM private key file".into()));
            }
            Ok(Some(Tls { cert, key }))
        }
        (Some(_), None) => Err((
            "server.tls_key".into(),
            "is required when server.tls_cert is set (the certificate's private key)".into(),
        )),
        (None, Some(_)) => {
            Err(("server.tls_cert".into(), "is required when server.tls_key is set (the certificate chain)".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Limits, (String, String)> {
        toml::from_str::<RawLimits>(text).map_err(|e| ("parse".to_string(), e.to_string()))?.validate()
    }

    #[test]
    fn defaults_and_derived_burst() {
        assert_eq!(parse("").unwrap(), Limits::default());
        let l = parse("requests_per_minute = 120").unwrap();
        assert_eq!((l.requests_per_minute, l.burst), (120, 12));
        let l = parse("requests_per_minute = 5").unwrap();
        assert_eq!(l.burst, 1, "a stated slow rate still allows one request");
        let l = parse("requests_per_minute = 0\nburst = 0").unwrap();
        assert_eq!(l.requests_per_minute, 0, "0 turns the rate limit off, and burst is then unused");
    }

    #[test]
    fn failed_authentication_throttle_defaults_and_off() {
        let d = parse("").unwrap();
        assert_eq!((d.auth_failures_per_minute, d.auth_failure_burst), (10, 20));
        let l = parse("auth_failures_per_minute = 30").unwrap();
        assert_eq!((l.auth_failures_per_minute, l.auth_failure_burst), (30, 20), "the burst keeps its default");
        let l = parse("auth_failures_per_minute = 0\nauth_failure_burst = 0").unwrap();
        assert_eq!(l.auth_failures_per_minute, 0, "0 turns the throttle off, and the burst is then unused");
        // The throttle is independent of the per-key rate limit.
        let l = parse("requests_per_minute = 0").unwrap();
        assert_eq!((l.requests_per_minute, l.auth_failures_per_minute), (0, 10));
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, key) in [
            ("burst = 0", "limits.burst"),
            ("request_timeout_seconds = 0", "limits.request_timeout_seconds"),
            ("stream_timeout_seconds = 100000", "limits.stream_timeout_seconds"),
            ("max_tracked_keys = 0", "limits.max_tracked_keys"),
            ("requests_per_minute = 2000000", "limits.requests_per_minute"),
            ("max_concurrent_requests = 200000", "limits.max_concurrent_requests"),
            ("auth_failures_per_minute = 1000001", "limits.auth_failures_per_minute"),
            ("auth_failure_burst = 0", "limits.auth_failure_burst"),
            ("auth_failures_per_minute = 5\nauth_failure_burst = 2000000", "limits.auth_failure_burst"),
        ] {
            assert_eq!(parse(text).unwrap_err().0, key, "{text}");
        }
        assert!(parse("rate = 3").unwrap_err().1.contains("unknown field `rate`"));
        let (_, reason) = parse("auth_failure_burst = 0").unwrap_err();
        assert!(
            reason.contains("between 1 and 1000000") && reason.contains("auth_failures_per_minute = 0"),
            "{reason}"
        );
        assert!(parse("auth_failures_per_minute = -1").unwrap_err().1.contains("auth_failures_per_minute"));
    }

    #[test]
    fn tls_needs_both_files() {
        assert_eq!(validate_tls(None, None).unwrap(), None);
        assert_eq!(validate_tls(Some("c.pem".into()), None).unwrap_err().0, "server.tls_key");
        assert_eq!(validate_tls(None, Some("k.pem".into())).unwrap_err().0, "server.tls_cert");
        assert_eq!(validate_tls(Some("".into()), Some("k.pem".into())).unwrap_err().0, "server.tls_cert");
        let tls = validate_tls(Some("c.pem".into()), Some("k.pem".into())).unwrap().unwrap();
        assert_eq!(tls.key, PathBuf::from("k.pem"));
    }
}
