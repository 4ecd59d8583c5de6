//! Verification is ongoing, not once: the embedded models' files are re-hashed and re-scanned on
//! a schedule, and whenever one of them changes on disk (size or modification time, checked
//! every few seconds). A failure takes the embedded backend out of the allowed set until a later
//! check passes; the model already in memory is the verified one, but a changed file on disk
//! means someone tampered with the deployment, and the operator must look.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use perimeter_policy::Provider;

use crate::state::AppState;

/// How often file metadata is compared (cheap: one `stat` per file).
const POLL: Duration = Duration::from_secs(5);

type Stamp = Vec<(PathBuf, u64, Option<SystemTime>)>;

fn stamp(paths: &[PathBuf]) -> Stamp {
    paths
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok();
            (p.clone(), m.as_ref().map_or(0, |m| m.len()), m.and_then(|m| m.modified().ok()))
        })
        .collect()
}

/// Verifies both embedded models; the first failure as text.
fn verify_all(config: &perimeter_config::Config) -> Result<(), String> {
    for name in [&config.models.embedding, &config.models.chat] {
        crate::state::verify_embedded(config, name).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Starts the re-verification task (only when the embedded backend is configured).
pub fn spawn(state: &AppState) {
    let Some(index) = state.config.backends.iter().position(|b| b.profile.provider == Provider::Embedded) else {
        return;
    };
    let Ok(manifest) = perimeter_runtime::manifest(state.config.models.manifest.as_deref()) else { return };
    let config = state.config.clone();
    // The signed statement and the trusted keys are watched too: replacing them is a change.
    let paths: Vec<PathBuf> = [&config.models.embedding, &config.models.chat]
        .iter()
        .filter_map(|n| manifest.model(n).ok())
        .flat_map(|e| e.files.iter().map(|f| config.models.dir.join(&f.path)))
        .chain(config.models.signature.iter().cloned())
        .chain(config.models.trusted_keys.iter().cloned())
        .collect();
    let state = state.clone();
    tokio::spawn(async move {
        let every = Duration::from_secs(config.models.reverify_seconds);
        let mut last_full = Instant::now();
        let mut last_stamp = stamp(&paths);
        loop {
            tokio::time::sleep(POLL).await;
            let now_stamp = stamp(&paths);
            let changed = now_stamp != last_stamp;
            if !changed && last_full.elapsed() < every {
                continue;
            }
            if changed {
                tracing::warn!("an embedded model file changed on disk; verifying again");
            }
            last_stamp = now_stamp;
            last_full = Instant::now();
            let config = config.clone();
            let result = tokio::task::spawn_blocking(move || verify_all(&config)).await;
            let result = match result {
                Ok(r) => r,
                Err(_) => Err("the verification task stopped".to_string()),
            };
            // A failure is always on record; a success only when it changes the state (a
            // recovered backend), so a quiet schedule does not fill the log.
            let was_unverified = state.backends.model_unverified(index);
            match &result {
                Ok(()) => {
                    tracing::info!("embedded models verified");
                    state.backends.set_model_unverified(index, false);
                }
                Err(reason) => {
                    tracing::error!(%reason, "embedded model verification failed; the embedded backend is out of service");
                    state.backends.set_model_unverified(index, true);
                }
            }
            if result.is_err() || was_unverified || changed {
                let audit = state.audit.clone();
                let config = state.config.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    crate::audit::record_model_verification(&audit, &config, result.as_ref().err())
                })
                .await;
            }
        }
    });
}
