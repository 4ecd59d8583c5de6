//! Authorisation through the real router: every route × role × tenant (plus no key and a bad
//! key), the 401 and 403 bodies, keys revoked or expired taking effect at the next request, an
//! open server while no key exists, and documents outside the caller's reach answering exactly
//! like documents that do not exist.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod tenancy;

use axum::http::StatusCode;
use perimeter_auth::{KeyStore, Role};
use serde_json::json;
use tenancy::{fixture, json, now, DOCS};

/// What a cell of the matrix expects.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// This exact status.
    Status(u16),
    /// The role may use the route (anything but 401 and 403): for routes other helpers add.
    Allowed,
    Unauthorized,
    Forbidden,
}

#[derive(Debug, Clone, Copy)]
enum Who {
    NoKey,
    BadKey,
    Key(&'static str, Role),
}

const ROUTES: &[&str] = &[
    "GET /healthz",
    "GET /readyz",
    "GET /openapi.json",
    "GET /metrics",
    "GET /v1/models",
    "POST /v1/chat/completions",
    "POST /v1/embeddings",
    "GET /v1/documents",
    "GET /v1/documents/{own}",
    "GET /v1/documents/{other_tenant}",
    "DELETE /v1/documents/{other_tenant}",
    "POST /v1/documents",
    "GET /v1/audit",
    "GET /v1/costs",
    "POST /v1/audit",
    "POST /v1/keys",
    "POST /v1/policy/reload",
    "GET /v1/no-such-route",
];

fn want(route: &str, who: Who) -> Want {
    let open = matches!(route, "GET /healthz" | "GET /readyz" | "GET /openapi.json");
    if open {
        return Want::Status(200);
    }
    let role = match who {
        Who::NoKey | Who::BadKey => return Want::Unauthorized,
        Who::Key(_, role) => role,
    };
    let (user, admin, auditor) = (role == Role::User, role == Role::Admin, role == Role::Auditor);
    let ok = |allowed: bool, status: u16| if allowed { Want::Status(status) } else { Want::Forbidden };
    match route {
        "GET /metrics" => ok(admin || auditor, 200),
        "GET /v1/models" => Want::Status(200),
        "POST /v1/chat/completions" | "POST /v1/embeddings" | "GET /v1/documents" | "GET /v1/documents/{own}" => {
            ok(user || admin, 200)
        }
        "GET /v1/documents/{other_tenant}" => ok(user || admin, 404),
        "DELETE /v1/documents/{other_tenant}" => ok(admin, 404),
        "POST /v1/documents" => ok(admin, 201),
        "GET /v1/audit" | "GET /v1/costs" => {
            if auditor {
                Want::Allowed
            } else {
                Want::Forbidden
            }
        }
        "POST /v1/audit" => Want::Forbidden,
        "POST /v1/keys" | "POST /v1/policy/reload" => {
            if admin {
                Want::Allowed
            } else {
                Want::Forbidden
            }
        }
        "GET /v1/no-such-route" => Want::Status(404),
        other => panic!("no expectation for {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_role_and_tenant() {
    let f = fixture("matrix");
    let mut whos = vec![Who::NoKey, Who::BadKey];
    for tenant in ["north", "south"] {
        for role in [Role::User, Role::Admin, Role::Auditor] {
            whos.push(Who::Key(tenant, role));
        }
    }
    // Keys are made after the first probe: until one exists the server is open.
    let keys: Vec<Option<String>> = whos
        .iter()
        .map(|w| match w {
            Who::NoKey => None,
            Who::BadKey => Some(format!("prm_{}_{}", "0".repeat(16), "0".repeat(64))),
            Who::Key(t, r) => Some(f.key(t, *r, &[])),
        })
        .collect();
    let own_doc =
        |tenant: &str| f.ids[DOCS.iter().position(|d| d.tenant == tenant && d.groups.is_empty()).unwrap()].clone();
    let mut failures = Vec::new();
    let mut cells = 0;
    for (i, who) in whos.iter().enumerate() {
        let tenant = match who {
            Who::Key(t, _) => *t,
            _ => "north",
        };
        let other = if tenant == "north" { "south" } else { "north" };
        for route in ROUTES {
            let (method, path) = route.split_once(' ').unwrap();
            let path = path.replace("{own}", &own_doc(tenant)).replace("{other_tenant}", &own_doc(other));
            let body = match *route {
                "POST /v1/chat/completions" => Some(
                    json!({"model": "perimeter", "messages": [{"role": "user", "content": "When do ferry crossings leave?"}]}),
                ),
                "POST /v1/embeddings" => Some(json!({"model": "perimeter", "input": "ferry crossings"})),
                "POST /v1/documents" => Some(
                    json!({"source": format!("new-{i}.md"), "content": "# New\n\nA short note about the ferry timetable.\n"}),
                ),
                _ => None,
            };
            let (status, headers, text) = f.call(method, &path, keys[i].as_deref(), body.as_ref()).await;
            cells += 1;
            let expected = want(route, *who);
            let ok = match expected {
                Want::Status(s) => status.as_u16() == s,
                Want::Allowed => status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                Want::Unauthorized => {
                    let v = json(&text);
                    status == StatusCode::UNAUTHORIZED
                        && headers.get("www-authenticate").is_some_and(|h| h.to_str().unwrap().starts_with("Bearer"))
                        && v["error"]["code"] == "invalid_api_key"
                        && v["error"]["type"] == "invalid_request_error"
                }
                Want::Forbidden => {
                    let v = json(&text);
                    status == StatusCode::FORBIDDEN && v["error"]["code"] == "insufficient_permissions"
                }
            };
            if !ok {
                failures.push(format!("{who:?} {route}: want {expected:?}, got {status} {text:.200}"));
            }
            if let Some(k) = &keys[i] {
                assert!(!text.contains(k.as_str()), "{who:?} {route}: the key is echoed");
            }
        }
    }
    assert!(failures.is_empty(), "{} of {cells} cells failed:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(cells, whos.len() * ROUTES.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_keys_the_server_is_open_and_the_first_key_closes_it() {
    let f = fixture("open");
    // Any bearer (OpenAI SDKs always send one) is ignored while no key exists.
    for key in [None, Some("sk-anything")] {
        let (status, _, text) = f.call("GET", "/v1/documents", key, None).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        // The anonymous principal is the default tenant: the fixture's tenants are not its own.
        assert_eq!(json(&text)["data"], json!([]), "{text}");
    }
    let (_, _, ready) = f.call("GET", "/readyz", None, None).await;
    assert_eq!(json(&ready)["documents"], DOCS.len(), "{ready}");
    let admin = f.key("north", Role::Admin, &[]);
    let (status, _, _) = f.call("GET", "/v1/documents", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, text) = f.call("GET", "/v1/documents", Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&text)["data"].as_array().unwrap().len(), 3, "north's three documents: {text}");
    // Readiness stays open but no longer counts documents across tenants.
    let (status, _, ready) = f.call("GET", "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&ready)["documents"], json!(null), "{ready}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_and_expiry_take_effect_at_the_next_request() {
    let f = fixture("revoke");
    let user = f.key("north", Role::User, &["hr"]);
    let deadline = now() + 2;
    let expiring = f.key_expiring("north", Role::User, &[], Some(deadline));
    for k in [&user, &expiring] {
        let (status, _, text) = f.call("GET", "/v1/documents", Some(k), None).await;
        assert_eq!(status, StatusCode::OK, "{text}");
    }
    // Revoked from another handle on the store, as `perimeter keys revoke` in another process.
    let id = user.split('_').nth(1).unwrap();
    assert!(KeyStore::at(&f.dir).revoke(id, now()).unwrap());
    let (status, headers, text) = f.call("GET", "/v1/documents", Some(&user), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    assert!(headers.contains_key("www-authenticate"));
    assert_eq!(json(&text)["error"]["message"], "Incorrect API key provided.");
    // Expiry: refused from the expiry second on, with no restart and no cache.
    while now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (status, _, text) = f
        .call(
            "POST",
            "/v1/chat/completions",
            Some(&expiring),
            Some(&json!({"model": "perimeter", "messages": [{"role": "user", "content": "ferry"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    assert!(f.recorder.take().is_empty(), "nothing reached the model");
    // A missing key says so; a malformed one is refused like a wrong one.
    let (_, _, text) = f.call("GET", "/v1/models", None, None).await;
    assert!(json(&text)["error"]["message"].as_str().unwrap().contains("didn't provide an API key"), "{text}");
    let (status, _, text) = f.call("GET", "/v1/models", Some("not-a-key"), None).await;
    assert_eq!(
        (status, json(&text)["error"]["message"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("Incorrect API key provided."))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_reach_documents_answer_exactly_like_missing_ones() {
    let f = fixture("sameness");
    let hr = f.key("north", Role::User, &["hr"]);
    let admin = f.key("north", Role::Admin, &[]);
    let idx = |source: &str| f.ids[DOCS.iter().position(|d| d.source == source).unwrap()].clone();
    let missing = "doc_0000000000000000".to_string();
    // Another tenant's document, a same-tenant document of a group the user lacks, a missing id.
    for (key, hidden) in [
        (&hr, vec![idx("south-ferry.md"), idx("north-budget.md"), missing.clone()]),
        (&admin, vec![idx("south-ferry.md"), idx("south-budget.md"), missing.clone()]),
    ] {
        let mut answers = Vec::new();
        for id in &hidden {
            let (status, headers, text) = f.call("GET", &format!("/v1/documents/{id}"), Some(key), None).await;
            answers.push((status, headers.get("content-type").cloned(), text.clone()));
            assert!(!text.contains(id.as_str()), "the id is not echoed: {text}");
        }
        assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
        assert_eq!(answers[0].0, StatusCode::NOT_FOUND);
    }
    let mut deletes = Vec::new();
    for id in [idx("south-ferry.md"), missing] {
        let (status, _, text) = f.call("DELETE", &format!("/v1/documents/{id}"), Some(&admin), None).await;
        deletes.push((status, text));
    }
    assert_eq!(deletes[0], deletes[1]);
    assert_eq!(deletes[0].0, StatusCode::NOT_FOUND);
    // The south document is still there for south.
    let south = f.key("south", Role::Admin, &[]);
    let (status, _, _) = f.call("GET", &format!("/v1/documents/{}", idx("south-ferry.md")), Some(&south), None).await;
    assert_eq!(status, StatusCode::OK);
    // A user reaches its own group's document; an admin deletes in its own tenant.
    let (status, _, _) = f.call("GET", &format!("/v1/documents/{}", idx("north-payroll.md")), Some(&hr), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) =
        f.call("DELETE", &format!("/v1/documents/{}", idx("north-payroll.md")), Some(&admin), None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_documents_belong_to_the_admins_tenant_and_body_groups() {
    let f = fixture("post");
    let admin = f.key("south", Role::Admin, &[]);
    let body = json!({"source": "memo.md", "content": "# Memo\n\nThe GANNET-5150 memo is for the legal group.\n", "groups": ["Legal"]});
    let (status, _, text) = f.call("POST", "/v1/documents", Some(&admin), Some(&body)).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let doc = json(&text);
    assert_eq!(doc["groups"], json!(["legal"]));
    let id = doc["id"].as_str().unwrap().to_string();
    // South users outside `legal` and every north principal get the missing-document 404.
    for key in [f.key("south", Role::User, &["hr"]), f.key("north", Role::Admin, &[])] {
        let (status, _, _) = f.call("GET", &format!("/v1/documents/{id}"), Some(&key), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let legal = f.key("south", Role::User, &["legal"]);
    let (status, _, _) = f.call("GET", &format!("/v1/documents/{id}"), Some(&legal), None).await;
    assert_eq!(status, StatusCode::OK);
    // An invalid group name is refused by name.
    let bad = json!({"source": "x.md", "content": "x", "groups": ["no spaces"]});
    let (status, _, text) = f.call("POST", "/v1/documents", Some(&admin), Some(&bad)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(json(&text)["error"]["param"], "groups");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_a_tenant_no_longer_configured_is_forbidden() {
    let f = fixture("gone");
    // The store does not know the configuration; the CLI checks at creation, the server on
    // every request (the tenant may have been removed since).
    let gone = f.key("west", Role::Admin, &[]);
    let (status, _, text) = f.call("GET", "/v1/documents", Some(&gone), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(json(&text)["error"]["message"].as_str().unwrap().contains("tenant"), "{text}");
}
