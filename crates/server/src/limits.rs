//! Per-key limits on the API: a token bucket per key (requests per minute with a burst), a cap
//! on each key's requests in flight, a time limit until the response starts, and a time limit on
//! a streamed (SSE) response, which is cut with an error event and `[DONE]`, never silently.
//!
//! The bucket and the in-flight counts are plain values with time as an input ([`TokenBuckets`],
//! [`InFlight`]), so their tests need no sleeps; [`middleware`] applies them to requests.
//!
//! Who is a key: the API key's id when the request carries one (the principal the auth layer
//! put in the request's extensions); otherwise the client's IP address when the server knows it
//! ([`ClientAddr`], set by [`crate::serve`]); otherwise one shared anonymous bucket (a router
//! driven without a socket, as in tests).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use perimeter_config::Limits;

use crate::error::ApiError;

/// The client's address as the listener saw it (plain TCP or TLS), for keying anonymous
/// requests. Serve with `into_make_service_with_connect_info::<ClientAddr>()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

impl Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>> for ClientAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

impl Connected<axum::serve::IncomingStream<'_, crate::tls::TlsListener>> for ClientAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, crate::tls::TlsListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// Token buckets, one per key: each holds up to `burst` tokens and refills at
/// `requests_per_minute / 60` per second; a request takes one. Memory is bounded: a bucket that
/// has refilled to full is the same as no bucket, so full buckets are dropped when the map
/// reaches `max_keys`, and if every tracked key is still active, new keys share one overflow
/// bucket (which errs toward limiting rather than toward unbounded memory).
#[derive(Debug)]
pub struct TokenBuckets {
    per_second: f64,
    burst: f64,
    max_keys: usize,
    buckets: HashMap<String, Bucket>,
    overflow: Bucket,
    /// No sweep before this instant after one that freed nothing (a sweep is O(keys)).
    next_sweep: Option<Instant>,
}

/// One token bucket: the tokens it held at `at`. Also used by [`crate::auth_throttle`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    pub(crate) tokens: f64,
    pub(crate) at: Instant,
}

impl Bucket {
    /// The tokens at `now`: refilled at `per_second` since `at`, never more than `burst`.
    pub(crate) fn refilled(self, now: Instant, per_second: f64, burst: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * per_second).min(burst)
    }
}

impl TokenBuckets {
    /// `requests_per_minute` must be positive (0 means "no limiter" and is handled by the caller).
    pub fn new(requests_per_minute: u32, burst: u32, max_keys: usize, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBuckets {
            per_second: f64::from(requests_per_minute.max(1)) / 60.0,
            burst,
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
            overflow: Bucket { tokens: burst, at: now },
            next_sweep: None,
        }
    }

    /// Takes one token from `key`'s bucket, or says in how many whole seconds (at least 1) one
    /// will be there.
    pub fn take(&mut self, key: &str, now: Instant) -> Result<(), u64> {
        let (per_second, burst) = (self.per_second, self.burst);
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.max_keys {
            self.sweep(now);
        }
        let tracked = self.buckets.contains_key(key) || self.buckets.len() < self.max_keys;
        let bucket = if tracked {
            self.buckets.entry(key.to_string()).or_insert(Bucket { tokens: burst, at: now })
        } else {
            &mut self.overflow
        };
        let tokens = bucket.refilled(now, per_second, burst);
        // Never move a bucket's clock back: an earlier `now` would credit the same time twice.
        bucket.at = bucket.at.max(now);
        if tokens >= 1.0 {
            bucket.tokens = tokens - 1.0;
            Ok(())
        } else {
            bucket.tokens = tokens;
            let wait = ((1.0 - tokens) / per_second).ceil();
            // `as` saturates; the wait is at most 60 s for any valid rate.
            Err((wait as u64).max(1))
        }
    }

    /// Keys with a bucket in memory now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        let (per_second, burst) = (self.per_second, self.burst);
        let before = self.buckets.len();
        self.buckets.retain(|_, b| b.refilled(now, per_second, burst) < burst);
        self.next_sweep = (self.buckets.len() == before).then(|| now + Duration::from_secs(1));
    }
}

/// Requests in flight per key. A [`Slot`] holds one place and gives it back when dropped; the
/// map holds only keys with a request in flight, so it needs no eviction.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    counts: Arc<Mutex<HashMap<String, u32>>>,
}

/// One request's place in its key's in-flight count; dropping it frees the place.
#[derive(Debug)]
pub struct Slot {
    counts: Arc<Mutex<HashMap<String, u32>>>,
    key: String,
}

impl InFlight {
    /// A place for one more request of `key`, if it has fewer than `max` in flight.
    pub fn try_acquire(&self, key: &str, max: u32) -> Option<Slot> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(key.to_string()).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot { counts: self.counts.clone(), key: key.to_string() })
    }

    /// Requests of `key` in flight now.
    pub fn count(&self, key: &str) -> u32 {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).get(key).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// The limits of one router: configuration plus the shared bucket and in-flight state.
#[derive(Debug, Clone)]
pub struct Limiter {
    limits: Limits,
    buckets: Option<Arc<Mutex<TokenBuckets>>>,
    in_flight: InFlight,
}

impl Limiter {
    pub fn new(limits: &Limits) -> Self {
        let buckets = (limits.requests_per_minute > 0).then(|| {
            Arc::new(Mutex::new(TokenBuckets::new(
                limits.requests_per_minute,
                limits.burst,
                limits.max_tracked_keys,
                Instant::now(),
            )))
        });
        Limiter { limits: limits.clone(), buckets, in_flight: InFlight::default() }
    }
}

/// Whether rate and concurrency limits apply to `path`: the API, not the probes and metrics that
/// load balancers and Prometheus poll from one address.
fn limited(path: &str) -> bool {
    path.starts_with("/v1/")
}

/// The client's address, when the request came through [`crate::serve`] (a router driven
/// without a socket, as in tests, has none).
pub(crate) fn client_addr(req: &Request) -> Option<SocketAddr> {
    req.extensions().get::<ConnectInfo<ClientAddr>>().map(|ConnectInfo(ClientAddr(addr))| *addr)
}

/// The key a request is limited under (see the module comment).
fn limit_key(req: &Request) -> String {
    let key_id = req.extensions().get::<perimeter_auth::Principal>().and_then(|p| p.key_id.as_deref());
    if let Some(id) = key_id {
        // Key ids are public identifiers (never the secret).
        return format!("key:{id}");
    }
    if let Some(addr) = client_addr(req) {
        return format!("ip:{}", addr.ip());
    }
    "anonymous".to_string()
}

/// The middleware: rate and concurrency limits on `/v1/…`, then the request time limit, then
/// the stream time limit on an SSE body. Runs inside the auth layer, so it sees the principal.
pub async fn middleware(limiter: Limiter, req: Request, next: Next) -> Response {
    let started = tokio::time::Instant::now();
    let mut slot = None;
    if limited(req.uri().path()) {
        let key = limit_key(&req);
        if let Some(buckets) = &limiter.buckets {
            let taken = buckets.lock().unwrap_or_else(PoisonError::into_inner).take(&key, Instant::now());
            if let Err(retry_after_secs) = taken {
                return rate_limited(retry_after_secs, false);
            }
        }
        if limiter.limits.max_concurrent_requests > 0 {
            match limiter.in_flight.try_acquire(&key, limiter.limits.max_concurrent_requests) {
                Some(s) => slot = Some(s),
                None => return rate_limited(1, true),
            }
        }
    }
    let request_limit = Duration::from_secs(limiter.limits.request_timeout_seconds);
    let response = match tokio::time::timeout(request_limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            return ApiError::TimedOut { limit_secs: limiter.limits.request_timeout_seconds, streaming: false }
                .into_response()
        }
    };
    let is_stream = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !is_stream {
        // The body of every non-streaming response is already in memory; the place is freed here.
        return response;
    }
    let deadline = started + Duration::from_secs(limiter.limits.stream_timeout_seconds);
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, cut_at(body, deadline, limiter.limits.stream_timeout_seconds, slot))
}

fn rate_limited(retry_after_secs: u64, concurrent: bool) -> Response {
    // `ApiError`'s response carries the `Retry-After` header.
    ApiError::RateLimited { retry_after_secs, concurrent }.into_response()
}

/// The SSE body, ended at `deadline` with an error event and `[DONE]`. The in-flight place lives
/// as long as the body: it is freed when the stream ends, is cut, or the client goes away (the
/// server then drops the body).
fn cut_at(body: Body, deadline: tokio::time::Instant, limit_secs: u64, slot: Option<Slot>) -> Body {
    struct State {
        data: Option<axum::body::BodyDataStream>,
        sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
        _slot: Option<Slot>,
    }
    let state =
        State { data: Some(body.into_data_stream()), sleep: Box::pin(tokio::time::sleep_until(deadline)), _slot: slot };
    let stream = futures::stream::unfold(state, move |mut st| async move {
        let next = {
            let data = st.data.as_mut()?;
            tokio::select! {
                biased;
                item = data.next() => Some(item),
                () = st.sleep.as_mut() => None,
            }
        };
        match next {
            Some(item) => item.map(|frame| (frame, st)),
            None => {
                // Drop the token stream now, so generation stops being awaited.
                st.data = None;
                tracing::warn!(limit_secs, "a streamed response reached the stream time limit and was cut");
                let error = ApiError::TimedOut { limit_secs, streaming: true }.body();
                let tail = format!("data: {error}\n\ndata: [DONE]\n\n");
                Some((Ok(Bytes::from(tail)), st))
            }
        }
    });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn a_burst_then_refill_at_the_rate() {
        let t0 = Instant::now();
        // 60 per minute = one per second, burst 3.
        let mut b = TokenBuckets::new(60, 3, 100, t0);
        for _ in 0..3 {
            assert_eq!(b.take("k", t0), Ok(()));
        }
        assert_eq!(b.take("k", t0), Err(1));
        assert_eq!(b.take("k", at(t0, 500)), Err(1), "half a token: wait rounds up to a whole second");
        assert_eq!(b.take("k", at(t0, 1000)), Ok(()));
        assert_eq!(b.take("k", at(t0, 1000)), Err(1));
        // Idle for a long time: refills to the burst, not beyond.
        for _ in 0..3 {
            assert_eq!(b.take("k", at(t0, 600_000)), Ok(()));
        }
        assert_eq!(b.take("k", at(t0, 600_000)), Err(1));
    }

    #[test]
    fn retry_after_is_whole_seconds_and_at_least_one() {
        let t0 = Instant::now();
        // 6 per minute = one per 10 s.
        let mut b = TokenBuckets::new(6, 1, 100, t0);
        assert_eq!(b.take("k", t0), Ok(()));
        assert_eq!(b.take("k", t0), Err(10));
        assert_eq!(b.take("k", at(t0, 9_500)), Err(1));
        assert_eq!(b.take("k", at(t0, 3_000)), Err(1), "time going backwards credits nothing");
        assert_eq!(b.take("k", at(t0, 10_000)), Ok(()));
    }

    #[test]
    fn keys_have_separate_buckets() {
        let t0 = Instant::now();
        let mut b = TokenBuckets::new(60, 1, 100, t0);
        assert_eq!(b.take("a", t0), Ok(()));
        assert!(b.take("a", t0).is_err());
        assert_eq!(b.take("b", t0), Ok(()), "another key is not limited by a's use");
    }

    #[test]
    fn memory_is_bounded_and_idle_buckets_are_evicted() {
        let t0 = Instant::now();
        let mut b = TokenBuckets::new(60, 2, 3, t0);
        for k in ["a", "b", "c"] {
            b.take(k, t0).unwrap();
        }
        assert_eq!(b.tracked(), 3);
        // All three are active (not full): a fourth key goes to the shared overflow bucket.
        assert_eq!(b.take("d", t0), Ok(()));
        assert_eq!(b.take("e", t0), Ok(()));
        assert!(b.take("f", t0).is_err(), "the overflow bucket is shared by untracked keys");
        assert_eq!(b.tracked(), 3);
        // Later every bucket has refilled: they are dropped and new keys get their own again.
        let later = at(t0, 5_000);
        assert_eq!(b.take("g", later), Ok(()));
        assert_eq!(b.tracked(), 1);
        assert_eq!(b.take("g", later), Ok(()));
        assert!(b.take("g", later).is_err());
    }

    #[test]
    fn in_flight_counts_are_per_key_and_freed_on_drop() {
        let f = InFlight::default();
        let a1 = f.try_acquire("a", 2).unwrap();
        let a2 = f.try_acquire("a", 2).unwrap();
        assert!(f.try_acquire("a", 2).is_none());
        let b1 = f.try_acquire("b", 2);
        assert!(b1.is_some(), "another key has its own count");
        drop(a1);
        assert_eq!(f.count("a"), 1);
        let a3 = f.try_acquire("a", 2);
        assert!(a3.is_some());
        drop((a2, a3, b1));
        assert_eq!(f.count("a"), 0);
        assert!(f.counts.lock().unwrap().is_empty(), "keys with nothing in flight are not kept");
    }
}
