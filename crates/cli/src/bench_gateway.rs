//! `perimeter bench gateway`: the latency Perimeter adds in front of a fast OpenAI-compatible
//! upstream, and the request rate it sustains.
//!
//! Everything runs in this process on loopback: a stand-in upstream that answers at once (one
//! runtime thread), Perimeter with the upstream as its API backend (detection, the access
//! decision, metering of usage, all on; retrieval off), and an open-loop load generator. Each
//! round measures the upstream called directly and then through Perimeter at the same fixed
//! rate, so the difference is Perimeter's share. Requests are sent on schedule whether or not
//! earlier ones have finished (open loop); each latency runs from the moment its request is
//! sent. tokio's timer ticks in milliseconds, so sends are released in small bursts; the lag
//! behind the schedule is reported so a generator that could not keep up is visible.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use axum::response::IntoResponse;
use clap::Args;
use perimeter_config::Config;
use serde_json::{json, Value};

#[derive(Args, Debug)]
pub struct GatewayArgs {
    /// Requests per second in the fixed-rate phases.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Seconds per measured phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Rounds of (direct, through Perimeter) at the fixed rate.
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// Concurrent connections in the saturation phase (requests as fast as they complete).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Port for the stand-in upstream (default: any free port). Fix it to point another gateway
    /// (e.g. the LiteLLM proxy) at the same upstream.
    #[arg(long)]
    upstream_port: Option<u16>,
    /// Another gateway in front of the same upstream, measured the same way: NAME=URL of its
    /// OpenAI-compatible chat completions endpoint (it must route model `upstream-model`).
    #[arg(long)]
    compare: Option<String>,
}

const UPSTREAM_MODEL: &str = "upstream-model";
const PROMPT: &str =
    "Summarise our travel policy for a new starter in two sentences, and say whom to ask about exceptions to it.";

/// A stand-in upstream that answers every chat request immediately, streamed or not.
async fn upstream_handler(body: axum::Json<Value>) -> axum::response::Response {
    let created = 1_700_000_000u64;
    if body.0["stream"].as_bool().unwrap_or(false) {
        let mut sse = String::with_capacity(1024);
        for (i, piece) in ["Book ", "through ", "the portal."].iter().enumerate() {
            let delta = if i == 0 { json!({"role": "assistant", "content": piece}) } else { json!({"content": piece}) };
            let chunk = json!({"id": "x", "object": "chat.completion.chunk", "created": created, "model": UPSTREAM_MODEL, "choices": [{"index": 0, "delta": delta, "finish_reason": null}]});
            sse.push_str("data: ");
            sse.push_str(&chunk.to_string());
            sse.push_str("\n\n");
        }
        let last = json!({"id": "x", "object": "chat.completion.chunk", "created": created, "model": UPSTREAM_MODEL, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 30, "completion_tokens": 3, "total_tokens": 33}});
        sse.push_str(&format!("data: {last}\n\ndata: [DONE]\n\n"));
        ([("content-type", "text/event-stream")], sse).into_response()
    } else {
        axum::Json(json!({
            "id": "x", "object": "chat.completion", "created": created, "model": UPSTREAM_MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Book through the portal."}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 3, "total_tokens": 33},
        }))
        .into_response()
    }
}

/// Runs `router` on 127.0.0.1 in its own runtime with `threads` workers; returns the address.
fn spawn_server(router: axum::Router, threads: usize) -> Result<SocketAddr> {
    spawn_server_on(router, threads, 0)
}

fn spawn_server_on(router: axum::Router, threads: usize, port: u16) -> Result<SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = tx.send(Err(anyhow::anyhow!("runtime: {e}")));
                return;
            }
        };
        rt.block_on(async move {
            match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                Ok(listener) => {
                    let _ = tx.send(listener.local_addr().map_err(anyhow::Error::from));
                    let _ = axum::serve(listener, router).await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e.into()));
                }
            }
        });
    });
    rx.recv().context("the server thread ended")?
}

struct Phase {
    latencies: Vec<f64>,
    errors: u64,
    seconds: f64,
    /// How far behind its schedule the generator fell, at worst.
    max_lag: f64,
}

impl Phase {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i]
    }
    fn rps(&self) -> f64 {
        self.latencies.len() as f64 / self.seconds
    }
}

/// Sends `rate` requests per second for `seconds` (open loop) and records each latency from its
/// scheduled start.
async fn fixed_rate(client: &reqwest::Client, url: &str, body: &Value, rate: u32, seconds: u64) -> Phase {
    let total = u64::from(rate) * seconds;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let started = Instant::now();
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(total as usize);
    let payload = Arc::new(body.to_string());
    let mut max_lag = 0.0f64;
    for i in 0..total {
        let due = started + interval * i as u32;
        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
        let (client, url, payload, errors) = (client.clone(), url.to_string(), payload.clone(), errors.clone());
        let lag = due.elapsed().as_secs_f64();
        max_lag = max_lag.max(lag);
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let ok = match client
                .post(&url)
                .header("content-type", "application/json")
                .body((*payload).clone())
                .send()
                .await
            {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            if !ok {
                errors.fetch_add(1, Ordering::Relaxed);
            }
            sent.elapsed().as_secs_f64()
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Ok(l) = t.await {
            latencies.push(l);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    Phase { latencies, errors: errors.load(Ordering::Relaxed), seconds, max_lag }
}

/// `concurrency` workers sending back to back for `seconds`.
async fn saturate(client: &reqwest::Client, url: &str, body: &Value, concurrency: usize, seconds: u64) -> Phase {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let payload = Arc::new(body.to_string());
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, url, payload) = (client.clone(), url.to_string(), payload.clone());
        workers.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::new(), 0u64);
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = match client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body((*payload).clone())
                    .send()
                    .await
                {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    lat.push(t.elapsed().as_secs_f64());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for w in workers {
        if let Ok((l, e)) = w.await {
            latencies.extend(l);
            errors += e;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    Phase { latencies, errors, seconds, max_lag: 0.0 }
}

fn ms(s: f64) -> String {
    format!("{:.3}", s * 1000.0)
}

pub fn run(config: &Config, args: GatewayArgs) -> Result<i32> {
    if args.rate == 0 || args.seconds == 0 || args.rounds == 0 || args.concurrency == 0 {
        bail!("--rate, --seconds, --rounds and --concurrency must be positive");
    }
    let compare = match &args.compare {
        None => None,
        Some(spec) => match spec.split_once('=') {
            Some((name, url)) if !name.is_empty() && url.starts_with("http") => {
                Some((name.to_string(), url.to_string()))
            }
            _ => bail!("--compare takes NAME=URL, e.g. litellm=http://127.0.0.1:4000/v1/chat/completions"),
        },
    };
    let upstream = spawn_server_on(
        axum::Router::new().route("/v1/chat/completions", axum::routing::post(upstream_handler)),
        1,
        args.upstream_port.unwrap_or(0),
    )?;
    let key_var = "PERIMETER_BENCH_UPSTREAM_KEY";
    // SAFETY-free in edition 2021: set before any thread reads the environment for it.
    std::env::set_var(key_var, "bench-key");
    let text = format!(
        "[[backend]]\nname = \"upstream\"\nprovider = \"openai_compatible\"\nhosting = \"api\"\nmodel = \"{UPSTREAM_MODEL}\"\nbase_url = \"http://{upstream}/v1\"\napi_key_env = \"{key_var}\"\njurisdiction = \"eu\"\nretention = \"none\"\ntrains_on_data = false\n\n[[tenant]]\nname = \"default\"\nresidency = [\"eu\"]\n\n[limits]\nrequests_per_minute = 0\nmax_concurrent_requests = 0\n"
    );
    let mut bench_config = Config::parse(&text, "<bench gateway>")?;
    bench_config.models = config.models.clone();
    bench_config.runtime = config.runtime.clone();
    // `[audit]` from --config: measure with or without a disk flush per routing record.
    bench_config.audit = config.audit.clone();
    let dir = tempfile_dir()?;
    let state = perimeter_server::AppState::load(bench_config, &dir)?;
    let perimeter = spawn_server(perimeter_server::app(state), 2)?;

    let direct_url = format!("http://{upstream}/v1/chat/completions");
    let perimeter_url = format!("http://{perimeter}/v1/chat/completions");
    let direct_body =
        json!({"model": UPSTREAM_MODEL, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16});
    let perimeter_body = json!({"model": "perimeter", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16, "perimeter": {"retrieval": false}});

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(1024).build()?;
    println!(
        "gateway overhead: stand-in upstream on {upstream}, Perimeter on {perimeter}; {} req/s for {} s per phase, {} rounds",
        args.rate, args.seconds, args.rounds
    );
    rt.block_on(async {
        // Warm-up: connections, lazy regex automata, allocator.
        let _ = fixed_rate(&client, &direct_url, &direct_body, args.rate.min(500), 2).await;
        let _ = fixed_rate(&client, &perimeter_url, &perimeter_body, args.rate.min(500), 2).await;
        if let Some((_, url)) = &compare {
            let _ = fixed_rate(&client, url, &direct_body, args.rate.min(500), 2).await;
        }
        println!(
            "{:<28} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>7} {:>8}",
            "phase", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "req/s", "errors", "lag ms"
        );
        for round in 1..=args.rounds {
            let direct = fixed_rate(&client, &direct_url, &direct_body, args.rate, args.seconds).await;
            let through = fixed_rate(&client, &perimeter_url, &perimeter_body, args.rate, args.seconds).await;
            let other = match &compare {
                Some((name, url)) => {
                    Some((name.clone(), fixed_rate(&client, url, &direct_body, args.rate, args.seconds).await))
                }
                None => None,
            };
            let mut rows = vec![(format!("round {round}: upstream direct"), &direct), (format!("round {round}: through Perimeter"), &through)];
            if let Some((name, p)) = &other {
                rows.push((format!("round {round}: through {name}"), p));
            }
            for (name, p) in rows {
                println!(
                    "{:<28} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8.0} {:>7} {:>8}",
                    name,
                    ms(p.percentile(0.5)),
                    ms(p.percentile(0.9)),
                    ms(p.percentile(0.99)),
                    ms(p.percentile(0.999)),
                    ms(p.percentile(1.0)),
                    p.rps(),
                    p.errors,
                    ms(p.max_lag)
                );
            }
            println!(
                "{:<28} {:>9} {:>9} {:>9}",
                format!("round {round}: added"),
                ms(through.percentile(0.5) - direct.percentile(0.5)),
                ms(through.percentile(0.9) - direct.percentile(0.9)),
                ms(through.percentile(0.99) - direct.percentile(0.99)),
            );
            if let Some((name, p)) = &other {
                println!(
                    "{:<28} {:>9} {:>9} {:>9}",
                    format!("round {round}: {name} added"),
                    ms(p.percentile(0.5) - direct.percentile(0.5)),
                    ms(p.percentile(0.9) - direct.percentile(0.9)),
                    ms(p.percentile(0.99) - direct.percentile(0.99)),
                );
            }
        }
        let direct = saturate(&client, &direct_url, &direct_body, args.concurrency, args.seconds).await;
        let through = saturate(&client, &perimeter_url, &perimeter_body, args.concurrency, args.seconds).await;
        println!(
            "saturation, {} connections: upstream direct {:.0} req/s ({} errors, p50 {} ms); through Perimeter {:.0} req/s ({} errors, p50 {} ms)",
            args.concurrency,
            direct.rps(),
            direct.errors,
            ms(direct.percentile(0.5)),
            through.rps(),
            through.errors,
            ms(through.percentile(0.5))
        );
        if let Ok(r) = client.get(format!("http://{perimeter}/metrics")).send().await {
            if let Ok(text) = r.text().await {
                let get = |name: &str| {
                    text.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<f64>().ok()))
                };
                if let (Some(sum), Some(count)) =
                    (get("perimeter_gateway_overhead_seconds_sum"), get("perimeter_gateway_overhead_seconds_count"))
                {
                    println!(
                        "server-side overhead (perimeter_gateway_overhead_seconds): mean {} ms over {count} requests",
                        ms(sum / count.max(1.0))
                    );
                }
            }
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
    Ok(0)
}

/// An empty data directory for the benchmark's store (the real one is never touched).
fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("perimeter-bench-gateway-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    Ok(dir)
}
