//! The Bedrock adapters against a local server on 127.0.0.1 that speaks Bedrock's documented
//! wire format: Converse JSON in, `application/vnd.amazon.eventstream` frames out (made with the
//! crate's own encoder, checked against AWS's vectors in `tests/data/eventstream`), AWS JSON
//! errors with `x-amzn-errortype`, and Titan/Cohere InvokeModel bodies. The server checks every
//! request's SigV4 signature with an independent implementation written here from AWS's
//! documentation (hmac + sha2), not with `aws-sigv4`. The signer itself is checked against AWS's
//! published SigV4 test suite (`tests/data/sigv4`). Nothing leaves loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Router;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use hmac::{Hmac, Mac};
use perimeter_providers::bedrock::eventstream::{self, Decoder, Header};
use perimeter_providers::bedrock::sigv4::{self, Signer};
use perimeter_providers::bedrock::{
    resolve_credentials, BedrockChat, BedrockEmbedder, BedrockOptions, Credentials, COHERE_MAX_BATCH,
};
use perimeter_providers::BuildError;
use perimeter_types::{
    BackendError, ChatBackend, ChatMessage, ChatRequest, EmbedError, Embedder, FinishReason, GenerationParams, Role,
    TokenSink, Usage,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const ACCESS_KEY: &str = "ASIAQEXAMPLE7PERIMTR";
const SECRET_KEY: &str = "SECRET-DO-NOT-LEAK/wJalrXUtnFEMIK7MDENG";
const SESSION_TOKEN: &str = "TOKEN-DO-NOT-LEAK-IQoJb3JpZ2luX2VjEJr";
const SECRET: &str = "secret prompt text";
const CLAUDE: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const CLAUDE_PATH: &str = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream";

// ---------------------------------------------------------------------------------------------
// The recording server.

struct Recorded {
    path: String,
    headers: HeaderMap,
    body: Value,
    /// The independent SigV4 check of the request.
    signature: Result<(), String>,
}

type Handler = Arc<dyn Fn(usize, Value) -> BoxFuture<'static, Response> + Send + Sync>;
type Log = Arc<Mutex<Vec<Recorded>>>;

struct Server {
    url: String,
    log: Log,
}

impl Server {
    /// Serves every request with `handler(request number, JSON body)`.
    async fn start<F, Fut>(handler: F) -> Server
    where
        F: Fn(usize, Value) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Response> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |n, body| handler(n, body).boxed());
        let log: Log = Arc::default();
        let app = Router::new().fallback(record).with_state((handler, log.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { url: format!("http://{addr}"), log }
    }

    fn requests(&self) -> std::sync::MutexGuard<'_, Vec<Recorded>> {
        self.log.lock().unwrap()
    }

    fn options(&self, model_id: &str) -> BedrockOptions {
        BedrockOptions {
            name: "bedrock-test".into(),
            model_id: model_id.into(),
            region: "us-east-1".into(),
            endpoint_url: Some(self.url.clone()),
            credentials: Credentials::new(ACCESS_KEY, SECRET_KEY, Some(SESSION_TOKEN.into())),
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(5),
            context_tokens: 200_000,
            // Exact request counts: no retries unless a test asks for them.
            retry: perimeter_providers::RetryPolicy::none(),
        }
    }

    fn chat(&self) -> BedrockChat {
        BedrockChat::new(self.options(CLAUDE)).unwrap()
    }

    /// Asserts that every request so far carried a valid signature.
    fn assert_all_signed(&self) {
        for (i, request) in self.requests().iter().enumerate() {
            assert_eq!(request.signature, Ok(()), "request {i} to {}", request.path);
        }
    }
}

async fn record(State((handler, log)): State<(Handler, Log)>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let signature = verify_signature(parts.method.as_str(), parts.uri.path(), &parts.headers, &bytes);
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    let n = {
        let mut log = log.lock().unwrap();
        log.push(Recorded {
            path: parts.uri.path().to_string(),
            headers: parts.headers,
            body: body.clone(),
            signature,
        });
        log.len() - 1
    };
    handler(n, body).await
}

// ---------------------------------------------------------------------------------------------
// An independent SigV4 check, written from AWS's "Create a signed AWS API request" steps.

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Every byte of the path except unreserved characters and `/` as `%XX`, as AWS encodes each
/// path segment of the canonical URI (for every service but S3, of the already-encoded path).
fn uri_encode_path(path: &str) -> String {
    path.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn verify_signature(method: &str, path: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let authorization = header("authorization").ok_or("no authorization header")?;
    let rest = authorization.strip_prefix("AWS4-HMAC-SHA256 Credential=").ok_or("not AWS4-HMAC-SHA256")?;
    let (credential, rest) = rest.split_once(", SignedHeaders=").ok_or("no SignedHeaders")?;
    let (signed_headers, signature) = rest.split_once(", Signature=").ok_or("no Signature")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, region, service, terminator] = scope[..] else { return Err("bad credential scope".into()) };
    if key_id != ACCESS_KEY || region != "us-east-1" || service != "bedrock" || terminator != "aws4_request" {
        return Err(format!("unexpected credential scope {credential}"));
    }
    let amz_date = header("x-amz-date").ok_or("no x-amz-date")?;
    if amz_date.len() != 16 || !amz_date.starts_with(date) {
        return Err(format!("x-amz-date {amz_date} does not match the scope date {date}"));
    }
    let signed: Vec<&str> = signed_headers.split(';').collect();
    let mut sorted = signed.clone();
    sorted.sort_unstable();
    if sorted != signed {
        return Err("SignedHeaders is not sorted".into());
    }
    for required in ["host", "content-type", "x-amz-date", "x-amz-security-token"] {
        if !signed.contains(&required) {
            return Err(format!("{required} is not signed ({signed_headers})"));
        }
    }
    if header("x-amz-security-token").as_deref() != Some(SESSION_TOKEN) {
        return Err("the session token was not sent".into());
    }
    let mut canonical_headers = String::new();
    for name in &signed {
        let value = header(name).ok_or_else(|| format!("signed header {name} was not sent"))?;
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        canonical_headers.push_str(&format!("{name}:{value}\n"));
    }
    let canonical_request = format!(
        "{method}\n{}\n\n{canonical_headers}\n{signed_headers}\n{}",
        uri_encode_path(path),
        hex::encode(Sha256::digest(body))
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let key = hmac(&hmac(&hmac(&hmac(format!("AWS4{SECRET_KEY}").as_bytes(), date), region), service), "aws4_request");
    let expected = hex::encode(hmac(&key, &string_to_sign));
    if expected == signature {
        Ok(())
    } else {
        Err(format!("signature mismatch; canonical request was:\n{canonical_request}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Bedrock's responses.

/// One ConverseStream event as Bedrock frames it: the three headers, in Bedrock's order.
fn event(kind: &str, payload: Value) -> Vec<u8> {
    let headers = [
        Header::string(":event-type", kind),
        Header::string(":content-type", "application/json"),
        Header::string(":message-type", "event"),
    ];
    eventstream::encode(&headers, payload.to_string().as_bytes())
}

fn exception(kind: &str) -> Vec<u8> {
    let headers = [
        Header::string(":exception-type", kind),
        Header::string(":content-type", "application/json"),
        Header::string(":message-type", "exception"),
    ];
    let payload = json!({"message": format!("Failed on {SECRET} for {ACCESS_KEY}")});
    eventstream::encode(&headers, payload.to_string().as_bytes())
}

fn start() -> Vec<u8> {
    event("messageStart", json!({"p": "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0", "role": "assistant"}))
}

fn delta(text: &str) -> Vec<u8> {
    event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": text}, "p": "abcdefgh"}))
}

fn block_stop() -> Vec<u8> {
    event("contentBlockStop", json!({"contentBlockIndex": 0, "p": "abcdefghijklmnopqrstuvwx"}))
}

fn stop(reason: &str) -> Vec<u8> {
    event("messageStop", json!({"p": "abcdefghijklmnopqr", "stopReason": reason}))
}

fn metadata(input: u32, output: u32) -> Vec<u8> {
    event(
        "metadata",
        json!({
            "metrics": {"latencyMs": 385},
            "p": "abcdefghij",
            "usage": {"inputTokens": input, "outputTokens": output, "totalTokens": input + output}
        }),
    )
}

/// A complete stream for `pieces`.
fn plain_stream(pieces: &[&str], reason: &str) -> Vec<Vec<u8>> {
    let mut parts = vec![start()];
    parts.extend(pieces.iter().map(|p| delta(p)));
    parts.extend([block_stop(), stop(reason), metadata(12, pieces.len() as u32)]);
    parts
}

/// An event-stream body written as the given parts, one network write each, a little apart so
/// that they arrive as separate reads.
fn event_stream(parts: Vec<Vec<u8>>) -> Response {
    let stream = futures::stream::iter(parts).then(|part| async move {
        tokio::time::sleep(Duration::from_millis(3)).await;
        Ok::<_, Infallible>(part)
    });
    event_stream_from(stream)
}

fn event_stream_from<S, E>(stream: S) -> Response
where
    S: futures::Stream<Item = Result<Vec<u8>, E>> + Send + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Response::builder()
        .header("content-type", "application/vnd.amazon.eventstream")
        .header("x-amzn-requestid", "a8e0b7c3-8f8f-4b55-9e43-2f0c1e0e7c11")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn json_response(status: u16, body: Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// An AWS JSON error: the type in `x-amzn-errortype`, and a message that quotes the prompt.
fn aws_error(status: u16, kind: &str) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .header("x-amzn-errortype", format!("{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"))
        .header("x-amzn-requestid", "3c3f1f5e-1c1a-4b8e-9d7e-5d6f0e2b1a90")
        .body(Body::from(json!({"message": format!("Request ({SECRET}) by {ACCESS_KEY} failed")}).to_string()))
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Helpers on the client side.

fn request() -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage::new(Role::System, "Answer from the sources."),
            ChatMessage::new(Role::User, "Source: Paris is the capital of France."),
            ChatMessage::new(Role::User, format!("What is the capital of France? ({SECRET})")),
        ],
        params: GenerationParams {
            max_tokens: 64,
            temperature: 0.2,
            top_p: 0.9,
            seed: 7,
            stop: vec!["\n\nUser:".into()],
        },
    }
}

/// A sink that records the pieces and answers `false` once it has `stop_after` of them.
fn sink(stop_after: Option<usize>) -> (TokenSink, Arc<Mutex<Vec<String>>>) {
    let pieces = Arc::new(Mutex::new(Vec::new()));
    let seen = pieces.clone();
    let sink: TokenSink = Box::new(move |piece: &str| {
        let mut seen = seen.lock().unwrap();
        seen.push(piece.to_string());
        stop_after.is_none_or(|n| seen.len() < n)
    });
    (sink, pieces)
}

async fn chat_error(server: &Server) -> BackendError {
    let (sink, _) = sink(None);
    server.chat().chat(request(), sink).await.unwrap_err()
}

/// The error's text must not carry a secret, the prompt or the provider's message.
fn assert_clean(message: &str) {
    for leak in [SECRET_KEY, SESSION_TOKEN, "DO-NOT-LEAK", SECRET, "Request (", "Failed on", "capital of France"] {
        assert!(!message.contains(leak), "{message:?} contains {leak:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Chat.

#[tokio::test]
async fn a_streamed_answer_arrives_piece_by_piece_however_the_bytes_are_cut() {
    let pieces = ["The", " capital", " of", " France", " is", " Paris", " —", " a", " café", " city", "."];
    let mut parts = vec![start()];
    for (i, piece) in pieces.iter().enumerate() {
        let frame = delta(piece);
        match i {
            // One frame cut inside its prelude, and one inside its payload, across writes.
            1 => parts.extend([frame[..5].to_vec(), frame[5..].to_vec()]),
            3 => {
                let (a, b) = frame.split_at(frame.len() - 9);
                parts.extend([a.to_vec(), b.to_vec()]);
            }
            // A UTF-8 character cut across writes.
            8 => {
                let cut = frame.iter().position(|&b| b == 0xC3).unwrap() + 1;
                parts.extend([frame[..cut].to_vec(), frame[cut..].to_vec()]);
            }
            // Two frames in one write, the second cut short and finished by the next write.
            9 => {
                let next = delta(pieces[10]);
                let mut both = frame;
                both.extend_from_slice(&next[..20]);
                parts.extend([both, next[20..].to_vec()]);
            }
            10 => {}
            _ => parts.push(frame),
        }
    }
    // contentBlockStop, messageStop and metadata in one write, as Bedrock often sends them.
    parts.push([block_stop(), stop("end_turn"), metadata(25, 11)].concat());

    let server = Server::start(move |_, _| {
        let parts = parts.clone();
        async move { event_stream(parts) }
    })
    .await;
    let chat = server.chat();
    assert_eq!((chat.name(), chat.model(), chat.context_tokens()), ("bedrock-test", CLAUDE, 200_000));
    let (sink, seen) = sink(None);
    let outcome = chat.chat(request(), sink).await.unwrap();

    assert_eq!(*seen.lock().unwrap(), pieces);
    assert_eq!(outcome.text, pieces.concat());
    assert_eq!(outcome.usage, Usage { prompt_tokens: 25, completion_tokens: 11 });
    assert_eq!(outcome.finish_reason, FinishReason::Stop);
    assert!(outcome.timings.prompt_ms >= 0.0 && outcome.timings.generation_ms > 0.0, "{:?}", outcome.timings);

    server.assert_all_signed();
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let recorded = &requests[0];
    assert_eq!(recorded.path, CLAUDE_PATH);
    assert_eq!(recorded.headers["content-type"], "application/json");
    assert_eq!(recorded.headers["accept"], "application/vnd.amazon.eventstream");
    assert_eq!(recorded.headers["host"], server.url.trim_start_matches("http://"));
    assert_eq!(recorded.headers["x-amz-security-token"], SESSION_TOKEN);
    assert_eq!(
        recorded.body,
        json!({
            "messages": [{"role": "user", "content": [
                {"text": "Source: Paris is the capital of France."},
                {"text": format!("What is the capital of France? ({SECRET})")}
            ]}],
            "system": [{"text": "Answer from the sources."}],
            "inferenceConfig": {"maxTokens": 64, "temperature": 0.2, "topP": 0.9, "stopSequences": ["\n\nUser:"]}
        })
    );
}

#[tokio::test]
async fn stop_reasons_become_finish_reasons() {
    for (reason, finish) in
        [("max_tokens", FinishReason::Length), ("stop_sequence", FinishReason::Stop), ("end_turn", FinishReason::Stop)]
    {
        let server =
            Server::start(move |_, _| async move { event_stream(plain_stream(&["Once", " upon"], reason)) }).await;
        let (sink, _) = sink(None);
        let outcome = server.chat().chat(request(), sink).await.unwrap();
        assert_eq!(outcome.finish_reason, finish, "{reason}");
        assert_eq!(outcome.text, "Once upon");
        assert_eq!(outcome.usage, Usage { prompt_tokens: 12, completion_tokens: 2 });
    }
    for reason in ["content_filtered", "guardrail_intervened"] {
        let server = Server::start(move |_, _| async move { event_stream(plain_stream(&["I"], reason)) }).await;
        assert_eq!(
            chat_error(&server).await,
            BackendError::InvalidRequest(format!("the provider's content filter stopped the answer ({reason})"))
        );
    }
}

#[tokio::test]
async fn a_stream_without_metadata_reports_zero_usage() {
    let server =
        Server::start(|_, _| async { event_stream(vec![start(), delta("ok"), block_stop(), stop("end_turn")]) }).await;
    let (sink, _) = sink(None);
    let outcome = server.chat().chat(request(), sink).await.unwrap();
    assert_eq!((outcome.text.as_str(), outcome.usage), ("ok", Usage::default()));
}

#[tokio::test]
async fn exceptions_in_the_stream_are_mapped_without_their_message() {
    let cases = [
        ("throttlingException", BackendError::Overloaded),
        ("serviceUnavailableException", BackendError::Overloaded),
        (
            "modelStreamErrorException",
            BackendError::Internal("the provider reported an error mid-stream (modelStreamErrorException)".into()),
        ),
        (
            "internalServerException",
            BackendError::Internal("the provider reported an error mid-stream (internalServerException)".into()),
        ),
        (
            "validationException",
            BackendError::InvalidRequest("the provider rejected the request mid-stream (validationException)".into()),
        ),
    ];
    for (kind, expected) in cases {
        let server =
            Server::start(move |_, _| async move { event_stream(vec![start(), delta("Par"), exception(kind)]) }).await;
        let error = chat_error(&server).await;
        assert_eq!(error, expected, "{kind}");
        assert_clean(&error.to_string());
    }
}

#[tokio::test]
async fn a_corrupted_frame_mid_stream_is_a_clear_error() {
    let server = Server::start(|_, _| async {
        let mut bad = delta("is");
        let at = bad.len() - 10;
        bad[at] ^= 0x20;
        event_stream(vec![start(), delta("Paris"), bad, stop("end_turn"), metadata(1, 1)])
    })
    .await;
    let (sink, seen) = sink(None);
    let error = server.chat().chat(request(), sink).await.unwrap_err();
    assert_eq!(
        error,
        BackendError::Internal(
            "the provider's event stream is corrupt: an event-stream message failed its CRC32 check".into()
        )
    );
    // What came before the bad frame was delivered; nothing after it.
    assert_eq!(*seen.lock().unwrap(), ["Paris"]);

    let server = Server::start(|_, _| async {
        let mut bad = delta("is");
        bad[9] ^= 0x01;
        event_stream(vec![start(), bad])
    })
    .await;
    assert_eq!(
        chat_error(&server).await,
        BackendError::Internal(
            "the provider's event stream is corrupt: an event-stream prelude failed its CRC32 check".into()
        )
    );
}

#[tokio::test]
async fn a_stream_that_ends_early_is_an_error() {
    // Ends inside a frame.
    let server = Server::start(|_, _| async {
        let frame = delta("Paris");
        event_stream(vec![start(), frame[..frame.len() - 3].to_vec()])
    })
    .await;
    let error = chat_error(&server).await;
    let BackendError::Internal(message) = &error else { panic!("{error:?}") };
    assert!(message.starts_with("the provider's stream ended inside an event ("), "{message}");

    // Ends cleanly between frames, but before messageStop.
    let server = Server::start(|_, _| async { event_stream(vec![start(), delta("Paris"), block_stop()]) }).await;
    assert_eq!(
        chat_error(&server).await,
        BackendError::Internal("the provider's stream ended early, before messageStop".into())
    );
}

#[tokio::test]
async fn http_errors_are_mapped_by_status_and_type_without_the_message() {
    let refused = "; check the AWS credentials, their permission to invoke this model (bedrock:InvokeModel, \
                   bedrock:InvokeModelWithResponseStream), the model's access in this region, and the clock";
    let cases = [
        (400, "ValidationException", BackendError::InvalidRequest("the provider rejected the request (status 400, ValidationException)".into())),
        (403, "AccessDeniedException", BackendError::Internal(format!("AWS refused the request (status 403, AccessDeniedException){refused}"))),
        (403, "UnrecognizedClientException", BackendError::Internal(format!("AWS refused the request (status 403, UnrecognizedClientException){refused}"))),
        (404, "ResourceNotFoundException", BackendError::Internal("the provider answered 404 (not found, ResourceNotFoundException); check the backend's model_id and region".into())),
        (424, "ModelErrorException", BackendError::Internal("the model failed (status 424, ModelErrorException)".into())),
        (429, "ThrottlingException", BackendError::Overloaded),
        (503, "ServiceUnavailableException", BackendError::Overloaded),
        (500, "InternalServerException", BackendError::Internal("provider error status 500, InternalServerException".into())),
    ];
    for (status, kind, expected) in cases {
        let server = Server::start(move |_, _| async move { aws_error(status, kind) }).await;
        let error = chat_error(&server).await;
        assert_eq!(error, expected, "{status} {kind}");
        assert_clean(&error.to_string());
        server.assert_all_signed();
    }
    // Without the header, the type comes from the body's `__type`.
    let server = Server::start(|_, _| async {
        json_response(400, json!({"__type": "com.amazon.coral.validate#ValidationException", "message": SECRET}))
    })
    .await;
    assert_eq!(
        chat_error(&server).await,
        BackendError::InvalidRequest("the provider rejected the request (status 400, ValidationException)".into())
    );
}

#[tokio::test]
async fn a_sink_that_says_stop_cancels_and_drops_the_connection() {
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = dropped.clone();
    let server = Server::start(move |_, _| {
        let guard = DropFlag(flag.clone());
        async move {
            // An endless answer; the guard lives as long as the server is writing it.
            let stream = futures::stream::unfold((guard, 0u64), |(guard, n)| async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Some((Ok(delta(&format!(" w{n}"))), (guard, n + 1)))
            });
            event_stream_from::<_, Infallible>(stream)
        }
    })
    .await;
    let (sink, seen) = sink(Some(3));
    let outcome = server.chat().chat(request(), sink).await.unwrap();
    assert_eq!(outcome.finish_reason, FinishReason::Cancelled);
    assert_eq!(outcome.text, " w0 w1 w2");
    assert_eq!(seen.lock().unwrap().len(), 3);
    assert_eq!(outcome.usage, Usage::default());

    let deadline = Instant::now() + Duration::from_secs(5);
    while !dropped.load(Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "the server kept streaming to a cancelled request");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_stalled_stream_fails_within_the_read_timeout() {
    let server = Server::start(|_, _| async {
        let first = futures::stream::iter([Ok(start()), Ok(delta("Par"))]);
        event_stream_from::<_, Infallible>(first.chain(futures::stream::pending()))
    })
    .await;
    let options = BedrockOptions { read_timeout: Duration::from_millis(300), ..server.options(CLAUDE) };
    let started = Instant::now();
    let (sink, _) = sink(None);
    let error = BedrockChat::new(options).unwrap().chat(request(), sink).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(
        error,
        BackendError::Internal("the provider sent nothing for longer than the read timeout of 300ms".into())
    );
}

// ---------------------------------------------------------------------------------------------
// Embeddings.

/// The vector the fake provider returns for input `text` ("t{i}"): not unit length.
fn raw_vector(text: &str) -> Vec<f32> {
    let i: f32 = text[1..].parse().unwrap();
    vec![i + 1.0, 2.0, -1.0]
}

fn assert_unit_and_equal(vector: &[f32], text: &str) {
    let raw = raw_vector(text);
    let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
    let expected: Vec<f32> = raw.iter().map(|x| x / norm).collect();
    assert!(vector.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-6), "{text}: {vector:?}");
    let length = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((length - 1.0).abs() < 1e-6, "{text}: length {length}");
}

fn inputs(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("t{i}")).collect()
}

#[tokio::test]
async fn titan_embeds_one_text_per_call_concurrently_and_keeps_input_order() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (now, peak) = (in_flight.clone(), most.clone());
    let server = Server::start(move |_, body| {
        let (now, peak) = (now.clone(), peak.clone());
        async move {
            let text = body["inputText"].as_str().unwrap().to_string();
            let i: u64 = text[1..].parse().unwrap();
            peak.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            // Later inputs answer sooner, so completion order differs from input order.
            tokio::time::sleep(Duration::from_millis(40 - 3 * (i % 10))).await;
            now.fetch_sub(1, Ordering::SeqCst);
            json_response(200, json!({"embedding": raw_vector(&text), "inputTextTokenCount": 2}))
        }
    })
    .await;
    let embedder = BedrockEmbedder::new(server.options("amazon.titan-embed-text-v2:0"), 3, 8192).unwrap();
    assert_eq!(
        (embedder.model(), embedder.dimensions(), embedder.max_tokens()),
        ("amazon.titan-embed-text-v2:0", 3, 8192)
    );
    assert_eq!(embedder.count_tokens("abcdefg"), 3);
    let result = embedder.embed(inputs(10)).await.unwrap();
    assert_eq!(result.vectors.len(), 10);
    for (i, vector) in result.vectors.iter().enumerate() {
        assert_unit_and_equal(vector, &format!("t{i}"));
    }
    assert_eq!(result.prompt_tokens, 20);
    let peak = most.load(Ordering::SeqCst);
    assert!((2..=4).contains(&peak), "{peak} requests in flight at once");

    server.assert_all_signed();
    let requests = server.requests();
    assert_eq!(requests.len(), 10);
    assert!(requests.iter().all(|r| r.path == "/model/amazon.titan-embed-text-v2%3A0/invoke"));
    assert!(requests.iter().all(|r| r.headers["accept"] == "application/json"));
    let mut bodies: Vec<&Value> = requests.iter().map(|r| &r.body).collect();
    bodies.sort_by_key(|b| b["inputText"].as_str().unwrap()[1..].parse::<u32>().unwrap());
    assert_eq!(*bodies[0], json!({"inputText": "t0", "dimensions": 3, "normalize": true}));
}

#[tokio::test]
async fn cohere_embeds_in_batches_of_at_most_96() {
    let server = Server::start(|_, body| async move {
        let texts: Vec<String> = serde_json::from_value(body["texts"].clone()).unwrap();
        assert_eq!(body["input_type"], "search_document");
        let embeddings: Vec<Vec<f32>> = texts.iter().map(|t| raw_vector(t)).collect();
        Response::builder()
            .header("content-type", "application/json")
            .header("x-amzn-bedrock-input-token-count", (3 * texts.len()).to_string())
            .body(Body::from(
                json!({"embeddings": embeddings, "id": "6f3a", "response_type": "embeddings_floats", "texts": texts})
                    .to_string(),
            ))
            .unwrap()
    })
    .await;
    let embedder = BedrockEmbedder::new(server.options("cohere.embed-multilingual-v3"), 3, 512).unwrap();
    let result = embedder.embed(inputs(200)).await.unwrap();
    assert_eq!(result.vectors.len(), 200);
    for i in [0, 95, 96, 191, 192, 199] {
        assert_unit_and_equal(&result.vectors[i], &format!("t{i}"));
    }
    assert_eq!(result.prompt_tokens, 600);

    server.assert_all_signed();
    let requests = server.requests();
    let sizes: Vec<usize> = requests.iter().map(|r| r.body["texts"].as_array().unwrap().len()).collect();
    assert_eq!(sizes, [COHERE_MAX_BATCH, COHERE_MAX_BATCH, 8]);
    assert_eq!(requests[1].body["texts"][0], "t96");
    assert!(requests.iter().all(|r| r.path == "/model/cohere.embed-multilingual-v3/invoke"));
}

#[tokio::test]
async fn embedding_errors_are_mapped_without_content() {
    let cases = [
        (
            400,
            "ValidationException",
            EmbedError::InvalidInput("the provider rejected the request (status 400, ValidationException)".into()),
        ),
        (
            429,
            "ThrottlingException",
            EmbedError::Internal(
                "the provider is overloaded (status 429, ThrottlingException); try again later".into(),
            ),
        ),
        (
            500,
            "InternalServerException",
            EmbedError::Internal("provider error status 500, InternalServerException".into()),
        ),
    ];
    for (status, kind, expected) in cases {
        let server = Server::start(move |_, _| async move { aws_error(status, kind) }).await;
        let embedder = BedrockEmbedder::new(server.options("cohere.embed-english-v3"), 3, 512).unwrap();
        let error = embedder.embed(inputs(2)).await.unwrap_err();
        assert_eq!(error, expected);
        assert_clean(&error.to_string());
    }

    let server = Server::start(|_, _| async { json_response(200, json!({"embedding": [1.0, 0.0]})) }).await;
    let embedder = BedrockEmbedder::new(server.options("amazon.titan-embed-text-v2:0"), 3, 8192).unwrap();
    assert_eq!(
        embedder.embed(inputs(1)).await.unwrap_err(),
        EmbedError::Internal("the provider returned 2 dimensions but the backend is configured for 3".into())
    );
    let server = Server::start(|_, _| async { json_response(200, json!({"embeddings": [[1.0, 0.0, 0.0]]})) }).await;
    let embedder = BedrockEmbedder::new(server.options("cohere.embed-english-v3"), 3, 512).unwrap();
    assert_eq!(
        embedder.embed(inputs(2)).await.unwrap_err(),
        EmbedError::Internal("the provider returned 1 embeddings for 2 inputs".into())
    );
    let error = embedder.embed(vec!["t0".into(), " ".into()]).await.unwrap_err();
    assert!(matches!(error, EmbedError::InvalidInput(m) if m.starts_with("input 1 is empty")));
    assert!(embedder.embed(Vec::new()).await.unwrap().vectors.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Construction and Debug.

fn offline_options(model_id: &str) -> BedrockOptions {
    BedrockOptions {
        name: "b".into(),
        model_id: model_id.into(),
        region: "eu-central-1".into(),
        endpoint_url: None,
        credentials: Credentials::new(ACCESS_KEY, SECRET_KEY, Some(SESSION_TOKEN.into())),
        connect_timeout: Duration::from_secs(1),
        read_timeout: Duration::from_secs(1),
        context_tokens: 8192,
        retry: perimeter_providers::RetryPolicy::none(),
    }
}

#[test]
fn debug_output_never_shows_secrets() {
    let options = offline_options(CLAUDE);
    let outputs = [
        format!("{options:?}"),
        format!("{options:#?}"),
        format!("{:?}", options.credentials),
        format!("{:?}", BedrockChat::new(options.clone()).unwrap()),
        format!("{:?}", BedrockEmbedder::new(offline_options("cohere.embed-english-v3"), 1024, 512).unwrap()),
    ];
    for output in &outputs {
        assert!(!output.contains("DO-NOT-LEAK"), "{output}");
        assert!(!output.contains("QEXAMPLE7"), "{output}");
    }
    assert!(outputs[0].contains("[redacted]"));
    // The default endpoint is the region's bedrock-runtime host, with the model id encoded.
    assert!(
        outputs[3].contains(
            "https://bedrock-runtime.eu-central-1.amazonaws.com/model/anthropic.claude-3-haiku-20240307-v1%3A0"
        ),
        "{}",
        outputs[3]
    );
}

#[test]
fn bad_options_are_refused_at_construction() {
    let build = |options: BedrockOptions| BedrockChat::new(options).map(|_| ());
    let region = |r: &str| BedrockOptions { region: r.into(), ..offline_options(CLAUDE) };
    assert!(matches!(build(region("us-east-1.evil.example")), Err(BuildError::BaseUrl(_))));
    assert!(matches!(build(region("")), Err(BuildError::BaseUrl(_))));
    let endpoint = |u: &str| BedrockOptions { endpoint_url: Some(u.into()), ..offline_options(CLAUDE) };
    let error = build(endpoint("https://user:hunter2@vpce.example")).unwrap_err();
    assert!(!error.to_string().contains("hunter2"));
    assert!(build(endpoint("https://vpce.example/?x=1")).is_err());
    assert!(build(endpoint("https://vpce-0a1b.bedrock-runtime.us-east-1.vpce.amazonaws.com/")).is_ok());
    assert!(matches!(
        build(BedrockOptions { model_id: " ".into(), ..offline_options(CLAUDE) }),
        Err(BuildError::BaseUrl(_))
    ));
    let bad_token =
        BedrockOptions { credentials: Credentials::new("AKIA", "s", Some("a\nb".into())), ..offline_options(CLAUDE) };
    assert_eq!(build(bad_token), Err(BuildError::ApiKey));
    let error = BedrockEmbedder::new(offline_options(CLAUDE), 3, 512).unwrap_err();
    assert!(matches!(error, BuildError::BaseUrl(m) if m.contains("Titan")));
}

// ---------------------------------------------------------------------------------------------
// SigV4: AWS's published test suite, through the signer the adapter uses.

/// Seconds since the Unix epoch of `YYYY-MM-DDTHH:MM:SSZ` (the proleptic Gregorian calendar).
fn parse_time(text: &str) -> SystemTime {
    let n = |range: std::ops::Range<usize>| text[range].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap())
}

/// `(request line, headers, body)` of an HTTP/1.1 request as the suite writes it.
fn parse_http(text: &str) -> (String, Vec<(String, String)>, String) {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let request_line = lines.next().unwrap().to_string();
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (name, value) = l.split_once(':').unwrap();
            (name.to_string(), value.to_string())
        })
        .collect();
    (request_line, headers, body.to_string())
}

fn sigv4_case(dir: &Path) {
    let name = dir.file_name().unwrap().to_string_lossy();
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap();
    let context: Value = serde_json::from_str(&read("context.json")).unwrap();
    let credentials = Credentials::new(
        context["credentials"]["access_key_id"].as_str().unwrap(),
        context["credentials"]["secret_access_key"].as_str().unwrap(),
        context["credentials"]["token"].as_str().map(str::to_owned),
    );
    let signer = Signer {
        region: context["region"].as_str().unwrap().into(),
        service: context["service"].as_str().unwrap().into(),
        content_sha256_header: context["sign_body"].as_bool().unwrap(),
    };
    let (request_line, headers, body) = parse_http(&read("request.txt"));
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap(), parts.next().unwrap());
    let host = &headers.iter().find(|(n, _)| n.eq_ignore_ascii_case("host")).unwrap().1;
    let url = format!("https://{host}{target}");
    let header_refs: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("x-amz-date"))
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let request = sigv4::Request { method, url: &url, headers: &header_refs, body: body.as_bytes() };
    let added = signer.sign(&request, &credentials, parse_time(context["timestamp"].as_str().unwrap())).unwrap();

    let (_, expected, _) = parse_http(&read("header-signed-request.txt"));
    let expected: BTreeMap<String, String> =
        expected.into_iter().map(|(n, v)| (n.to_ascii_lowercase(), v.trim_start().to_string())).collect();
    let authorization = added.iter().find(|h| h.name == "authorization").unwrap();
    assert_eq!(authorization.value, expected["authorization"], "{name}: Authorization");
    for header in &added {
        assert_eq!(Some(&header.value), expected.get(header.name), "{name}: {}", header.name);
    }
}

#[test]
fn sigv4_test_suite() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sigv4");
    let mut cases: Vec<PathBuf> =
        std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    cases.sort();
    assert!(cases.len() >= 10, "{cases:?}");
    for case in &cases {
        sigv4_case(case);
    }
}

// ---------------------------------------------------------------------------------------------
// Event-stream vectors.

#[test]
fn eventstream_vectors() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/eventstream");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "hex"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "{cases:?}");
    for case in &cases {
        let hex_text: String = std::fs::read_to_string(case).unwrap().split_whitespace().collect();
        let bytes = hex::decode(hex_text).unwrap();
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(case.with_extension("json")).unwrap()).unwrap();
        let want_messages = expected["messages"].as_array().cloned().unwrap_or_default();
        for cut in 0..=bytes.len() {
            let mut decoder = Decoder::new();
            let mut messages = Vec::new();
            let mut error = None;
            for part in [&bytes[..cut], &bytes[cut..]] {
                match decoder.push(part) {
                    Ok(m) => messages.extend(m),
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            if error.is_none() {
                error = decoder.finish().err();
            }
            let got: Vec<Value> = messages
                .iter()
                .map(|m| {
                    let headers: Vec<Value> =
                        m.headers.iter().map(|h| json!([h.name, m.header_str(&h.name).unwrap()])).collect();
                    json!({"headers": headers, "payload": String::from_utf8(m.payload.clone()).unwrap()})
                })
                .collect();
            let label = format!("{} cut at {cut}", case.display());
            let error_name = error.map(|e| format!("{e:?}").split(['(', ' ']).next().unwrap().to_string());
            match expected["error"].as_str() {
                Some(kind) => {
                    assert_eq!(error_name.as_deref(), Some(kind), "{label}");
                    // Messages before the bad one are delivered, never more.
                    assert!(got.len() <= want_messages.len() && got[..] == want_messages[..got.len()], "{label}");
                }
                None => {
                    assert_eq!(error_name, None, "{label}");
                    assert_eq!(got, want_messages, "{label}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Credentials from the real environment and temporary files. Tests that set variables hold
// ENV_LOCK, so that they never run at once.

static ENV_LOCK: Mutex<()> = Mutex::new(());

const AWS_VARS: [&str; 6] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
];

/// Sets the AWS variables for one test and puts the old values back when dropped.
struct EnvGuard {
    saved: Vec<(&'static str, Option<String>)>,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl EnvGuard {
    fn set(values: &[(&'static str, &str)]) -> Self {
        let lock = ENV_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let saved = AWS_VARS.iter().map(|&name| (name, std::env::var(name).ok())).collect();
        for name in AWS_VARS {
            std::env::remove_var(name);
        }
        for (name, value) in values {
            std::env::set_var(name, value);
        }
        Self { saved, _lock: lock }
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        for (name, value) in &self.saved {
            match value {
                Some(value) => std::env::set_var(name, value),
                None => std::env::remove_var(name),
            }
        }
    }
}

fn aws_files() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials");
    let config = dir.path().join("config");
    std::fs::write(
        &credentials,
        "[default]\naws_access_key_id = AKIADEFAULTEXAMPLE\naws_secret_access_key = SECRET-DO-NOT-LEAK-1\n\n\
         [work]\naws_access_key_id = ASIAWORKEXAMPLE\naws_secret_access_key = SECRET-DO-NOT-LEAK-2\n\
         aws_session_token = TOKEN-DO-NOT-LEAK-2\n",
    )
    .unwrap();
    std::fs::write(
        &config,
        "[default]\nregion = us-east-1\n\n[profile ops]\nregion = eu-west-1\naws_access_key_id = AKIAOPSEXAMPLE\n\
         aws_secret_access_key = SECRET-DO-NOT-LEAK-3\n\n[profile sso]\nsso_session = corp\nsso_account_id = 123456789012\n",
    )
    .unwrap();
    let (c, f) = (credentials.display().to_string(), config.display().to_string());
    (dir, c, f)
}

#[test]
fn credentials_come_from_the_environment_first() {
    let (_dir, credentials, config) = aws_files();
    let _env = EnvGuard::set(&[
        ("AWS_ACCESS_KEY_ID", "AKIAENVEXAMPLE"),
        ("AWS_SECRET_ACCESS_KEY", "SECRET-DO-NOT-LEAK-ENV"),
        ("AWS_SESSION_TOKEN", "TOKEN-DO-NOT-LEAK-ENV"),
        ("AWS_SHARED_CREDENTIALS_FILE", &credentials),
        ("AWS_CONFIG_FILE", &config),
    ]);
    let found = resolve_credentials(None).unwrap();
    assert_eq!(
        found,
        Credentials::new("AKIAENVEXAMPLE", "SECRET-DO-NOT-LEAK-ENV", Some("TOKEN-DO-NOT-LEAK-ENV".into()))
    );
}

#[test]
fn credentials_come_from_shared_files_by_profile() {
    let (_dir, credentials, config) = aws_files();
    let _env = EnvGuard::set(&[("AWS_SHARED_CREDENTIALS_FILE", &credentials), ("AWS_CONFIG_FILE", &config)]);
    assert_eq!(
        resolve_credentials(None).unwrap(),
        Credentials::new("AKIADEFAULTEXAMPLE", "SECRET-DO-NOT-LEAK-1", None)
    );
    assert_eq!(
        resolve_credentials(Some("work")).unwrap(),
        Credentials::new("ASIAWORKEXAMPLE", "SECRET-DO-NOT-LEAK-2", Some("TOKEN-DO-NOT-LEAK-2".into()))
    );
    assert_eq!(resolve_credentials(Some("ops")).unwrap().access_key_id(), "AKIAOPSEXAMPLE");
    std::env::set_var("AWS_PROFILE", "ops");
    assert_eq!(resolve_credentials(None).unwrap().access_key_id(), "AKIAOPSEXAMPLE");
    // The argument beats AWS_PROFILE.
    assert_eq!(resolve_credentials(Some("work")).unwrap().access_key_id(), "ASIAWORKEXAMPLE");
}

#[test]
fn credential_errors_name_files_and_profiles_but_no_secret() {
    let (dir, credentials, config) = aws_files();
    let _env = EnvGuard::set(&[("AWS_SHARED_CREDENTIALS_FILE", &credentials), ("AWS_CONFIG_FILE", &config)]);
    let missing = resolve_credentials(Some("nope")).unwrap_err();
    assert!(missing.contains("profile \"nope\" is not in") && missing.contains(&credentials), "{missing}");
    let sso = resolve_credentials(Some("sso")).unwrap_err();
    assert!(sso.contains("sso_session") && sso.contains(&config), "{sso}");
    std::fs::write(dir.path().join("credentials"), "[default]\naws_secret_access_key SECRET-DO-NOT-LEAK-4\n").unwrap();
    let broken = resolve_credentials(None).unwrap_err();
    assert!(broken.ends_with("is malformed at line 2 (expected [section] or key = value)"), "{broken}");
    std::env::set_var("AWS_ACCESS_KEY_ID", "AKIAHALF");
    let half = resolve_credentials(None).unwrap_err();
    assert_eq!(half, "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
    for error in [missing, sso, broken, half] {
        assert!(!error.contains("DO-NOT-LEAK"), "{error}");
    }
}

#[tokio::test]
async fn throttling_is_retried_with_a_fresh_signature_each_time() {
    let server = Server::start(|n, _| async move {
        if n == 0 {
            let mut r = aws_error(429, "ThrottlingException");
            r.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("0"));
            r
        } else {
            event_stream(plain_stream(&["Hello", " again"], "end_turn"))
        }
    })
    .await;
    let options = BedrockOptions { retry: perimeter_providers::RetryPolicy::DEFAULT, ..server.options(CLAUDE) };
    let chat = BedrockChat::new(options).unwrap();
    let outcome = chat.chat(request(), Box::new(|_| true)).await.unwrap();
    assert_eq!(outcome.text, "Hello again");
    assert_eq!(server.requests().len(), 2, "one retry after the throttle");
    server.assert_all_signed();
}
