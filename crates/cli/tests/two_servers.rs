//! Two real Perimeter processes: one serves its embedded model over its OpenAI-compatible API,
//! the other uses it as an `openai_compatible` self-hosted backend. When the upstream dies, the
//! front falls back to its own embedded model, which the policy also allows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn models_dir() -> PathBuf {
    std::env::var_os("PERIMETER_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("models"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(data: &Path, port: u16, config: Option<&Path>) -> Server {
    let mut c = Command::new(env!("CARGO_BIN_EXE_perimeter"));
    c.current_dir(repo_root())
        .env("PERIMETER_MODELS_DIR", models_dir())
        .env("PERIMETER_LOG", "warn")
        .env_remove("PERIMETER_CONFIG")
        .arg("--data-dir")
        .arg(data);
    if let Some(cfg) = config {
        c.arg("--config").arg(cfg);
    }
    Server(c.args(["serve", "--listen", &format!("127.0.0.1:{port}")]).stderr(Stdio::null()).spawn().unwrap())
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(90), "{base} never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn metric(client: &reqwest::Client, base: &str, line_prefix: &str) -> f64 {
    let text = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(line_prefix).and_then(|v| v.trim().parse().ok())).unwrap_or(0.0)
}

#[test]
fn one_perimeter_serves_another_as_a_self_hosted_backend() {
    let upstream_data = tempfile::tempdir().unwrap();
    let front_data = tempfile::tempdir().unwrap();
    let (up_port, front_port) = (free_port(), free_port());
    let config = front_data.path().join("front.toml");
    std::fs::write(
        &config,
        format!(
            "[[backend]]\nname = \"upstream-perimeter\"\nprovider = \"openai_compatible\"\nhosting = \"self_hosted\"\nmodel = \"smollm2-135m-instruct\"\nbase_url = \"http://127.0.0.1:{up_port}/v1\"\njurisdiction = \"eu\"\nread_timeout_ms = 60000\n\n[[tenant]]\nname = \"default\"\nresidency = [\"eu\"]\n"
        ),
    )
    .unwrap();
    let upstream = serve(upstream_data.path(), up_port, None);
    let _front = serve(front_data.path(), front_port, Some(&config));
    let (up, front) = (format!("http://127.0.0.1:{up_port}"), format!("http://127.0.0.1:{front_port}"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        wait_ready(&client, &up).await;
        wait_ready(&client, &front).await;
        let ask = |stream: bool| {
            json!({"model": "perimeter", "stream": stream, "max_tokens": 8, "perimeter": {"retrieval": false},
                   "messages": [{"role": "user", "content": "Say hello to the new starter."}]})
        };
        let routed = r#"perimeter_http_requests_total{route="/v1/chat/completions",status="200"} "#;

        // Restricted: self-hosted and embedded are allowed; the self-hosted upstream is preferred.
        let r = client
            .post(format!("{front}/v1/chat/completions"))
            .header("x-perimeter-level", "restricted")
            .json(&ask(false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-perimeter-backend"], "upstream-perimeter");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["model"], "smollm2-135m-instruct");
        assert!(!body["choices"][0]["message"]["content"].as_str().unwrap().trim().is_empty(), "{body}");
        assert!(body["usage"]["completion_tokens"].as_u64().unwrap() > 0, "usage comes back from the upstream: {body}");
        assert_eq!(metric(&client, &up, routed).await, 1.0, "the upstream answered it");

        // Streaming through both.
        let r = client.post(format!("{front}/v1/chat/completions")).json(&ask(true)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-perimeter-backend"], "upstream-perimeter");
        let text = r.text().await.unwrap();
        assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
        assert_eq!(metric(&client, &up, routed).await, 2.0);

        // The upstream goes away: the front falls back to its embedded model, inside the allowed set.
        drop(upstream);
        let r = client.post(format!("{front}/v1/chat/completions")).json(&ask(false)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-perimeter-backend"], "embedded");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["perimeter"]["reasons"].to_string().contains("failed before answering, skipped: upstream-perimeter"),
            "{body}"
        );
    });
}
