//! The throttle on failed authentication: a token bucket per client address that each 401 takes
//! a token from (`[limits] auth_failures_per_minute`, `auth_failure_burst`). While an address's
//! bucket is empty, a request from it that does not authenticate gets 429 `auth_throttled`
//! instead of 401, with no audit record of its own: one `access_denied` record (reason
//! `auth_throttled`, with the number of attempts refused) is written when the address starts
//! being throttled, and at most one a minute per address while it goes on. So guessing keys
//! costs neither a disk write per guess nor unbounded audit-log growth.
//!
//! A valid key from a throttled address is let through. Behind one NAT or proxy every client
//! shares an address, and one script guessing keys there must not lock the others out; the key
//! check is a read of one row in the key store, which is cheap, while what made guessing costly
//! (an audit append and a log line per attempt) is gone. A throttled request with no key or one
//! not shaped like a key is refused without reading the store at all. Successful
//! authentication takes no token; 403 (a valid key, the wrong role) is not a failure here.
//!
//! The client is the address the listener saw ([`crate::limits::ClientAddr`]); a router driven
//! without a socket (tests) has none and is never throttled. An IPv6 client counts by its /64
//! prefix, because one host normally holds a whole /64 and could otherwise use a fresh address
//! for every guess; an IPv4-mapped IPv6 address counts as its IPv4 address.
//!
//! [`AuthThrottle`] is a plain value with time as an input, so its tests need no sleeps; the
//! key-check middleware ([`crate::auth`]) applies it. Memory is bounded as in
//! [`crate::limits::TokenBuckets`]: at most `max_tracked_keys` addresses; when the map is full,
//! buckets that have refilled (and have no audit record within the last minute) are dropped,
//! and if every tracked address is still failing, new addresses share one overflow bucket. We
//! do not evict the stalest active address instead: an attacker with more addresses than the
//! cap could then cycle through them and find a fresh bucket, and an audit record, every time.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::limits::Bucket;

/// At most one `auth_throttled` audit record per address in this time.
pub const RECORD_EVERY: Duration = Duration::from_secs(60);

/// The client failed authentications count against: an IPv4 address, or an IPv6 /64 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Client(IpAddr);

impl Client {
    /// The client of a peer address (see the module comment).
    pub fn of(ip: IpAddr) -> Client {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Client(IpAddr::V4(v4)),
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Client(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
        }
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// Whether a client's failed authentications are being throttled now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Clear,
    /// The bucket is empty; a token comes back in `retry_after_secs` whole seconds (at least 1).
    Throttled {
        retry_after_secs: u64,
    },
}

/// An `auth_throttled` audit record that is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordDue {
    /// Attempts refused with 429 since the client's previous record, this one included.
    pub refused: u64,
    /// Counted in the overflow bucket that addresses beyond `max_tracked_keys` share.
    pub shared: bool,
}

/// Failed-authentication buckets, one per client (see the module comment).
#[derive(Debug)]
pub struct AuthThrottle {
    per_second: f64,
    burst: f64,
    max_clients: usize,
    clients: HashMap<Client, Entry>,
    overflow: Entry,
    /// No sweep before this instant after one that freed nothing (a sweep is O(clients)).
    next_sweep: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    bucket: Bucket,
    /// Refusals since the last audit record.
    refused: u64,
    /// When the last audit record was due.
    recorded_at: Option<Instant>,
}

impl Entry {
    fn full(burst: f64, now: Instant) -> Entry {
        Entry { bucket: Bucket { tokens: burst, at: now }, refused: 0, recorded_at: None }
    }

    /// An entry that has refilled and owes no record-free minute is the same as no entry.
    fn idle(&self, now: Instant, per_second: f64, burst: f64) -> bool {
        self.bucket.refilled(now, per_second, burst) >= burst
            && self.recorded_at.is_none_or(|t| now.saturating_duration_since(t) >= RECORD_EVERY)
    }
}

impl AuthThrottle {
    /// `failures_per_minute` must be positive (0 means "no throttle" and is handled by the
    /// caller).
    pub fn new(failures_per_minute: u32, burst: u32, max_clients: usize, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        AuthThrottle {
            per_second: f64::from(failures_per_minute.max(1)) / 60.0,
            burst,
            max_clients: max_clients.max(1),
            clients: HashMap::new(),
            overflow: Entry::full(burst, now),
            next_sweep: None,
        }
    }

    /// Whether `client` is throttled now. Takes nothing and never adds a client.
    pub fn standing(&mut self, client: Client, now: Instant) -> Standing {
        let (per_second, burst) = (self.per_second, self.burst);
        let Some(entry) = self.entry(client, now, false) else { return Standing::Clear };
        let tokens = entry.bucket.refilled(now, per_second, burst);
        if tokens >= 1.0 {
            Standing::Clear
        } else {
            let wait = ((1.0 - tokens) / per_second).ceil();
            // `as` saturates; the wait is at most 60 s for any valid rate.
            Standing::Throttled { retry_after_secs: (wait as u64).max(1) }
        }
    }

    /// One failed authentication (answered 401) from `client`: takes a token.
    pub fn failed(&mut self, client: Client, now: Instant) {
        let (per_second, burst) = (self.per_second, self.burst);
        if let Some(entry) = self.entry(client, now, true) {
            let tokens = entry.bucket.refilled(now, per_second, burst);
            // Concurrent failures that all passed `standing` may overdraw; the bucket stops at 0.
            entry.bucket.tokens = (tokens - 1.0).max(0.0);
            // Never move a bucket's clock back: an earlier `now` would credit the same time twice.
            entry.bucket.at = entry.bucket.at.max(now);
        }
    }

    /// One attempt from a throttled `client` refused with 429: counted, and an audit record is
    /// due when the client has had none in the last [`RECORD_EVERY`].
    pub fn refused(&mut self, client: Client, now: Instant) -> Option<RecordDue> {
        let entry = self.entry(client, now, true)?;
        entry.refused = entry.refused.saturating_add(1);
        let due = entry.recorded_at.is_none_or(|t| now.saturating_duration_since(t) >= RECORD_EVERY);
        if !due {
            return None;
        }
        let refused = std::mem::take(&mut entry.refused);
        entry.recorded_at = Some(now);
        // After `entry`, a client is in the map exactly when it has a bucket of its own.
        Some(RecordDue { refused, shared: !self.clients.contains_key(&client) })
    }

    /// Clients with a bucket of their own in memory now.
    pub fn tracked(&self) -> usize {
        self.clients.len()
    }

    /// The client's entry: its own, a new one (when `insert` and there is room), or the shared
    /// overflow entry when the map is full of active clients. `None`: untracked, with room to
    /// spare, and not asked to insert (the client has failed nothing yet).
    fn entry(&mut self, client: Client, now: Instant, insert: bool) -> Option<&mut Entry> {
        if !self.clients.contains_key(&client) && self.clients.len() >= self.max_clients {
            self.sweep(now);
        }
        if self.clients.contains_key(&client) || (insert && self.clients.len() < self.max_clients) {
            let burst = self.burst;
            return Some(self.clients.entry(client).or_insert_with(|| Entry::full(burst, now)));
        }
        if self.clients.len() >= self.max_clients {
            return Some(&mut self.overflow);
        }
        None
    }

    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|t| now < t) {
            return;
        }
        let (per_second, burst) = (self.per_second, self.burst);
        let before = self.clients.len();
        self.clients.retain(|_, e| !e.idle(now, per_second, burst));
        self.next_sweep = (self.clients.len() == before).then(|| now + Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    fn ip(s: &str) -> Client {
        Client::of(s.parse().unwrap())
    }

    #[test]
    fn failures_past_the_burst_throttle_and_the_bucket_refills_at_the_rate() {
        let t0 = Instant::now();
        // 6 a minute = one per 10 s, burst 3.
        let mut t = AuthThrottle::new(6, 3, 100, t0);
        let a = ip("192.0.2.1");
        for _ in 0..3 {
            assert_eq!(t.standing(a, t0), Standing::Clear);
            t.failed(a, t0);
        }
        assert_eq!(t.standing(a, t0), Standing::Throttled { retry_after_secs: 10 });
        assert_eq!(t.standing(a, at(t0, 9_500)), Standing::Throttled { retry_after_secs: 1 }, "rounded up");
        assert_eq!(t.standing(a, at(t0, 10_000)), Standing::Clear, "one token after 10 s");
        t.failed(a, at(t0, 10_000));
        assert_eq!(t.standing(a, at(t0, 10_000)), Standing::Throttled { retry_after_secs: 10 }, "and only one");
        assert_eq!(t.standing(ip("192.0.2.2"), t0), Standing::Clear, "another address has its own bucket");
    }

    #[test]
    fn standing_never_adds_a_client() {
        let t0 = Instant::now();
        let mut t = AuthThrottle::new(10, 1, 100, t0);
        for i in 0..50u8 {
            assert_eq!(t.standing(ip(&format!("198.51.100.{i}")), t0), Standing::Clear);
        }
        assert_eq!(t.tracked(), 0, "only a failure adds a bucket");
    }

    #[test]
    fn one_record_when_throttling_starts_then_at_most_one_a_minute_with_the_count() {
        let t0 = Instant::now();
        let mut t = AuthThrottle::new(1, 1, 100, t0);
        let a = ip("192.0.2.7");
        t.failed(a, t0);
        assert_eq!(t.refused(a, t0), Some(RecordDue { refused: 1, shared: false }));
        for s in 1..60u64 {
            assert_eq!(t.refused(a, at(t0, s * 1000)), None, "no second record within the minute ({s} s)");
        }
        // The 60th second: a record for the 59 refusals since the first one and this one.
        assert_eq!(t.refused(a, at(t0, 60_000)), Some(RecordDue { refused: 60, shared: false }));
        assert_eq!(t.refused(a, at(t0, 61_000)), None);
        // Another address is recorded on its own.
        let b = ip("192.0.2.8");
        t.failed(b, t0);
        assert_eq!(t.refused(b, at(t0, 61_000)), Some(RecordDue { refused: 1, shared: false }));
    }

    #[test]
    fn ipv6_counts_by_its_64_prefix_and_mapped_ipv4_as_ipv4() {
        assert_eq!(ip("2001:db8:1:2:aaaa::1"), ip("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.1"), ip("192.0.2.1"));
        assert_eq!(ip("2001:db8:1:2:aaaa::1").to_string(), "2001:db8:1:2::/64");
        assert_eq!(ip("192.0.2.1").to_string(), "192.0.2.1");

        let t0 = Instant::now();
        let mut t = AuthThrottle::new(10, 2, 100, t0);
        t.failed(ip("2001:db8::1"), t0);
        t.failed(ip("2001:db8::2"), t0);
        assert!(
            matches!(t.standing(ip("2001:db8::ffff"), t0), Standing::Throttled { .. }),
            "a fresh address in the same /64 is the same client"
        );
        assert_eq!(t.tracked(), 1);
    }

    #[test]
    fn the_number_of_tracked_addresses_is_capped_and_refilled_buckets_are_dropped() {
        let t0 = Instant::now();
        // 60 a minute = one per second, burst 2, at most 3 addresses.
        let mut t = AuthThrottle::new(60, 2, 3, t0);
        for i in 1..=3u8 {
            t.failed(ip(&format!("203.0.113.{i}")), t0);
        }
        assert_eq!(t.tracked(), 3);
        // Many more addresses fail while all three are active: none gets a bucket of its own;
        // they share the overflow bucket, which throttles them together after its burst.
        for i in 10..200u8 {
            t.failed(ip(&format!("203.0.113.{i}")), t0);
        }
        assert_eq!(t.tracked(), 3, "the cap holds");
        assert!(matches!(t.standing(ip("203.0.113.250"), t0), Standing::Throttled { .. }));
        assert_eq!(t.refused(ip("203.0.113.250"), t0), Some(RecordDue { refused: 1, shared: true }));
        assert_eq!(t.refused(ip("203.0.113.251"), t0), None, "one record a minute for the shared bucket too");
        assert!(matches!(t.standing(ip("203.0.113.1"), t0), Standing::Clear), "a tracked address keeps its own");

        // Later every bucket has refilled: they are dropped, and a new address gets its own.
        let later = at(t0, 5_000);
        t.failed(ip("203.0.113.99"), later);
        assert_eq!(t.tracked(), 1);
        assert_eq!(t.standing(ip("203.0.113.99"), later), Standing::Clear, "one of two tokens left");
    }

    #[test]
    fn a_refilled_bucket_with_a_recent_record_is_kept_so_records_stay_one_a_minute() {
        let t0 = Instant::now();
        // Refills in a second, so the bucket is full long before the minute is over.
        let mut t = AuthThrottle::new(600, 1, 1, t0);
        let a = ip("192.0.2.50");
        t.failed(a, t0);
        assert!(t.refused(a, t0).is_some());
        // Another address at 30 s would need the only place: `a` keeps it (its record is recent),
        // so the newcomer shares the overflow bucket and `a`'s minute is not reset.
        t.failed(ip("192.0.2.51"), at(t0, 30_000));
        assert_eq!(t.tracked(), 1);
        t.failed(a, at(t0, 30_000));
        assert_eq!(t.refused(a, at(t0, 30_000)), None, "still within a's minute");
        // After the minute `a` is idle again and gives up its place.
        t.failed(ip("192.0.2.52"), at(t0, 120_000));
        assert_eq!(t.tracked(), 1);
        assert_eq!(t.standing(a, at(t0, 120_000)), Standing::Clear);
    }

    #[test]
    fn concurrent_failures_stop_at_an_empty_bucket_and_time_going_back_credits_nothing() {
        let t0 = Instant::now();
        let mut t = AuthThrottle::new(60, 1, 10, t0);
        let a = ip("192.0.2.9");
        for _ in 0..5 {
            t.failed(a, t0);
        }
        // Overdrawn failures do not push the next token further away than one refill.
        assert_eq!(t.standing(a, at(t0, 1_000)), Standing::Clear);
        t.failed(a, at(t0, 1_000));
        assert!(matches!(t.standing(a, at(t0, 500)), Standing::Throttled { .. }));
    }
}
