//! Canary probes: running a suite against a backend, once (`perimeter model canary`) or on a
//! schedule inside the server, where a failing run takes the backend out of the allowed set
//! until a later run passes.

use std::sync::Arc;
use std::time::Duration;

use perimeter_canary::{Answers, CompiledSuite, Suite};
use perimeter_types::{BackendError, ChatBackend, ChatMessage, ChatRequest, GenerationParams, Role};

use crate::state::AppState;

/// Runs every prompt of `suite` on `backend`, greedily, and returns the answers.
pub async fn run_suite(backend: &dyn ChatBackend, suite: &CompiledSuite) -> Result<Answers, BackendError> {
    let mut answers = Answers::new();
    for prompt in suite.prompts() {
        let request = ChatRequest {
            messages: vec![ChatMessage::new(Role::User, prompt.text)],
            params: GenerationParams {
                max_tokens: suite.suite.max_tokens,
                temperature: 0.0,
                ..GenerationParams::default()
            },
        };
        let outcome = backend.chat(request, Box::new(|_| true)).await?;
        answers.insert(prompt.key, outcome.text);
    }
    Ok(answers)
}

/// Starts one task per `[[canary]]`. A suite or baseline that cannot be read marks the backend
/// as failing (fail closed) and says why in the log.
pub fn spawn_scheduled(state: &AppState) {
    for canary in state.config.canaries.clone() {
        let Some(index) = state.config.policy.backend_index(&canary.backend) else { continue };
        let state = state.clone();
        tokio::spawn(async move {
            let loaded = std::fs::read_to_string(&canary.suite)
                .map_err(|e| format!("could not read {}: {}", canary.suite.display(), e.kind()))
                .and_then(|t| Suite::parse(&t).map_err(|e| e.to_string()));
            let baseline: Result<Option<Answers>, String> = match &canary.baseline {
                None => Ok(None),
                Some(p) => std::fs::read(p)
                    .map_err(|e| format!("could not read {}: {}", p.display(), e.kind()))
                    .and_then(|b| serde_json::from_slice(&b).map_err(|_| format!("{} is not a baseline", p.display())))
                    .map(Some),
            };
            let (suite, baseline) = match (loaded, baseline) {
                (Ok(s), Ok(b)) => (s, b),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(backend = %canary.backend, error = %e, "canary suite unusable; backend taken out of service");
                    state.backends.set_canary_failed(index, true);
                    return;
                }
            };
            let mut interval = tokio::time::interval(Duration::from_secs(canary.interval_seconds));
            loop {
                interval.tick().await;
                let Some(backend) = state.backends.chat(index).cloned() else { return };
                let passed = check(&canary.backend, backend, &suite, baseline.as_ref()).await;
                state.backends.set_canary_failed(index, !passed);
            }
        });
    }
}

async fn check(name: &str, backend: Arc<dyn ChatBackend>, suite: &CompiledSuite, baseline: Option<&Answers>) -> bool {
    match run_suite(backend.as_ref(), suite).await {
        Ok(answers) => {
            let report = suite.evaluate(&answers, baseline);
            if report.passed {
                tracing::info!(backend = %name, suite = %suite.suite.name, "canary probes passed");
            } else {
                for f in report.failures() {
                    tracing::warn!(backend = %name, failure = %f, "canary probe failed");
                }
            }
            report.passed
        }
        Err(e) => {
            // An unreachable backend is the circuit breaker's business; a canary that cannot run
            // does not pass.
            tracing::warn!(backend = %name, error = %e, "canary probes could not run");
            false
        }
    }
}
