//! `perimeter keys create|list|revoke`, run as an operator would: the key is printed once, the
//! store keeps no key text and is private to its owner, tenants must be declared, and bad
//! input is refused with a message that names it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn perimeter(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_perimeter"));
    c.env_remove("PERIMETER_CONFIG").env("PERIMETER_LOG", "error").arg("--data-dir").arg(data);
    c
}

fn run(c: &mut Command) -> (i32, String, String) {
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn create_list_and_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (code, out, err) = run(perimeter(&data).args(["keys", "list", "--json"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["data"], serde_json::json!([]));

    let (code, out, err) = run(perimeter(&data).args([
        "keys",
        "create",
        "--tenant",
        "default",
        "--role",
        "user",
        "--groups",
        "HR,eng",
        "--expires",
        "2999-01-01",
        "--json",
    ]));
    assert_eq!(code, 0, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let (key, id) = (created["key"].as_str().unwrap(), created["id"].as_str().unwrap());
    assert!(key.starts_with(&format!("prm_{id}_")), "{out}");
    let store = std::fs::read(data.join("keys.sqlite3")).unwrap();
    let secret = key.rsplit('_').next().unwrap();
    assert!(!String::from_utf8_lossy(&store).contains(secret), "the store keeps a digest, not the secret");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("keys.sqlite3")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    let (code, out, _) = run(perimeter(&data).args(["keys", "list", "--json"]));
    assert_eq!(code, 0);
    assert!(!out.contains(secret));
    let list: Value = serde_json::from_str(&out).unwrap();
    let k = &list["data"][0];
    assert_eq!((k["id"].as_str(), k["tenant"].as_str(), k["role"].as_str()), (Some(id), Some("default"), Some("user")));
    assert_eq!(k["groups"], serde_json::json!(["hr", "eng"]));
    assert_eq!(k["expires_at"], "2999-01-01T00:00:00Z");
    assert_eq!(k["status"], "active");

    let (code, _, err) = run(perimeter(&data).args(["keys", "revoke", id]));
    assert_eq!(code, 0, "{err}");
    let (_, out, _) = run(perimeter(&data).args(["keys", "list", "--json"]));
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["data"][0]["status"], "revoked");
    let (code, _, err) = run(perimeter(&data).args(["keys", "revoke", "0123456789abcdef"]));
    assert_eq!(code, 1);
    assert!(err.contains("no key has the id \"0123456789abcdef\""), "{err}");
}

#[test]
fn tenants_must_be_declared_and_bad_input_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("tenants.toml");
    std::fs::write(&config, "[[tenant]]\nname = \"acme\"\nresidency = [\"any\"]\n").unwrap();
    let create = |args: &[&str]| {
        let mut c = perimeter(&data);
        c.arg("--config").arg(&config).args(["keys", "create"]).args(args);
        run(&mut c)
    };
    let (code, out, err) = create(&["--tenant", "acme", "--role", "admin", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"key\":\"prm_"), "{out}");
    let cases: &[(&[&str], &str)] = &[
        (&["--tenant", "default", "--role", "user"], "--tenant \"default\" is not declared"),
        (&["--tenant", "nope", "--role", "user"], "\"nope\""),
        (&["--tenant", "acme", "--role", "root"], "\"root\""),
        (&["--tenant", "acme", "--role", "user", "--groups", "a b"], "\"a b\""),
        (&["--tenant", "acme", "--role", "user", "--expires", "2001-01-01"], "future"),
        (&["--tenant", "acme", "--role", "user", "--expires", "soon"], "\"soon\""),
    ];
    for (args, want) in cases {
        let (code, out, err) = create(args);
        assert_ne!(code, 0, "{args:?}");
        assert!(out.is_empty(), "{args:?}: no key printed: {out}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
