//! Prometheus metrics, kept as atomics and rendered in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Finer buckets for Perimeter's own share of a request, which is measured in microseconds.
const OVERHEAD_BUCKETS: &[f64] =
    &[0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new(BUCKETS)
    }
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_nanos: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, seconds: f64) {
        for (i, bound) in self.bounds.iter().enumerate() {
            if seconds <= *bound {
                self.counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, bound) in self.bounds.iter().enumerate() {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", self.counts[i].load(Ordering::Relaxed));
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

#[derive(Default)]
pub struct Metrics {
    /// (route, status) → count.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Spend by (tenant, backend).
    spend: Mutex<BTreeMap<(String, String), perimeter_cost::Money>>,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    pub embedding_tokens: AtomicU64,
    pub chat_seconds: Histogram,
    pub first_token_seconds: Histogram,
    pub retrieval_seconds: Histogram,
    /// Time spent in Perimeter itself per chat request: the whole request minus the backend call.
    pub overhead_seconds: OverheadHistogram,
    pub decisions_routed: AtomicU64,
    pub decisions_denied: AtomicU64,
}

/// A histogram with microsecond-scale buckets.
pub struct OverheadHistogram(pub Histogram);

impl Default for OverheadHistogram {
    fn default() -> Self {
        Self(Histogram::new(OVERHEAD_BUCKETS))
    }
}

impl Metrics {
    pub fn request(&self, route: &str, status: u16) {
        let mut map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((route.to_string(), status)).or_insert(0) += 1;
    }

    /// Counts one access decision.
    /// Adds a request's cost to the spend counter of (tenant, backend).
    pub fn spend(&self, tenant: &str, backend: &str, cost: perimeter_cost::Money) {
        let mut spend = self.spend.lock().unwrap_or_else(|p| p.into_inner());
        let slot = spend.entry((tenant.to_string(), backend.to_string())).or_insert(perimeter_cost::Money::ZERO);
        *slot += cost;
    }

    pub fn decision(&self, routed: bool) {
        let c = if routed { &self.decisions_routed } else { &self.decisions_denied };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, documents: u64, chunks: u64) -> String {
        let mut out = String::new();
        out.push_str("# HELP perimeter_http_requests_total HTTP requests by route and status.\n# TYPE perimeter_http_requests_total counter\n");
        for ((route, status), n) in self.requests.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "perimeter_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
        out.push_str("# HELP perimeter_spend_usd_total Cost of answered requests in USD since start-up, by tenant and backend (exact decimals; the audit log holds the record).\n# TYPE perimeter_spend_usd_total counter\n");
        for ((tenant, backend), usd) in self.spend.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(
                out,
                "perimeter_spend_usd_total{{tenant=\"{}\",backend=\"{}\"}} {usd}",
                label(tenant),
                label(backend)
            );
        }
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        let _ = writeln!(
            out,
            "# HELP perimeter_decisions_total Access decisions by outcome.\n# TYPE perimeter_decisions_total counter\nperimeter_decisions_total{{decision=\"route\"}} {}\nperimeter_decisions_total{{decision=\"deny\"}} {}",
            self.decisions_routed.load(Ordering::Relaxed),
            self.decisions_denied.load(Ordering::Relaxed)
        );
        counter(
            &mut out,
            "perimeter_prompt_tokens_total",
            "Prompt tokens processed by chat backends.",
            self.prompt_tokens.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "perimeter_completion_tokens_total",
            "Tokens generated by chat backends.",
            self.completion_tokens.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "perimeter_embedding_tokens_total",
            "Tokens embedded for API requests.",
            self.embedding_tokens.load(Ordering::Relaxed),
        );
        self.chat_seconds.render(&mut out, "perimeter_chat_duration_seconds", "Chat completion latency, end to end.");
        self.first_token_seconds.render(
            &mut out,
            "perimeter_time_to_first_token_seconds",
            "Time from request to first generated token.",
        );
        self.retrieval_seconds.render(
            &mut out,
            "perimeter_retrieval_duration_seconds",
            "Query embedding plus hybrid search.",
        );
        self.overhead_seconds.0.render(
            &mut out,
            "perimeter_gateway_overhead_seconds",
            "Time a chat request spends in Perimeter itself (detection, retrieval, policy, prompt, restore, HTTP), excluding the backend call.",
        );
        let _ = writeln!(out, "# HELP perimeter_documents Documents in the store.\n# TYPE perimeter_documents gauge\nperimeter_documents {documents}");
        let _ = writeln!(
            out,
            "# HELP perimeter_chunks Chunks in the store.\n# TYPE perimeter_chunks gauge\nperimeter_chunks {chunks}"
        );
        out
    }
}

/// A label value in the exposition format: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
