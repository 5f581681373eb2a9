//! Property tests over outside input the gateway parses: the config file, JSON-RPC lines as
//! the stdio transport frames them, and guard API request bodies. Arbitrary Unicode (combining
//! marks, right-to-left text, emoji, NUL) and lone surrogates in JSON escapes: nothing panics,
//! every answer is Ok or a clear error (a 4xx with a JSON body from the guard API).
//! Cases per property: proptest's default, or `PROPTEST_CASES` (CI runs a longer pass).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;
use serde_json::{json, Value};
use tower::ServiceExt;
use warden_gateway::{Config, Runtime};

/// Text a parser may choke on: multibyte characters at every width, combining marks,
/// right-to-left and bidi controls, emoji with joiners, NUL, and plain ASCII.
fn nasty() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("e\u{301}\u{302}".to_owned()),
        Just("\u{202e}evil\u{202c}".to_owned()),
        Just("שלום".to_owned()),
        Just("مرحبا".to_owned()),
        Just("👩\u{200d}👩\u{200d}👧".to_owned()),
        Just("東京都".to_owned()),
        Just("\0".to_owned()),
        Just("\u{feff}".to_owned()),
        Just("{tool}".to_owned()),
        Just("\"\\".to_owned()),
        "[a-z@./:]{0,8}",
        any::<String>(),
    ];
    proptest::collection::vec(piece, 0..6).prop_map(|v| v.concat())
}

/// Any JSON value, with nasty strings as keys and values.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        nasty().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(nasty(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// JSON text whose strings may hold lone surrogates (`\ud800`), which no Rust string can.
fn with_lone_surrogates(v: &Value, at: usize) -> String {
    let text = v.to_string();
    match text.char_indices().filter(|(_, c)| *c == '"').nth(at) {
        Some((i, _)) => format!("{}\\ud800{}", &text[..=i], &text[i + 1..]),
        None => text,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(64), ..ProptestConfig::default() })]

    #[test]
    fn any_config_text_parses_or_fails_with_an_error(text in nasty()) {
        let _ = Config::parse(&text, "warden.toml").map(|c| c.validate());
    }

    #[test]
    fn any_strings_in_config_fields_parse_validate_and_compile_or_fail_with_an_error(
        listen in nasty(), profile in nasty(), tool in nasty(), param in nasty(),
        upstream in nasty(), url in nasty(), description in nasty(),
    ) {
        let s = |v: &str| toml::Value::String(v.to_owned()).to_string();
        let text = format!(
            "[server]\nlisten = {}\n[profiles.{}]\ntools = [{}]\nparams = [{}]\n\
             require = [{{ tool = {}, arg = {}, ends_with = {} }}]\n\
             [tools.{}]\ndescription = {}\nparams = [{}]\n\
             [[upstreams]]\nname = {}\nurl = {}\n",
            s(&listen), s(&profile), s(&tool), s(&param), s(&tool), s(&param), s(&description),
            s(&tool), s(&description), s(&param), s(&upstream), s(&url),
        );
        if let Ok(config) = Config::parse(&text, "warden.toml") {
            let _ = config.validate();
            let _ = config.engine();
        }
    }

    #[test]
    fn any_line_on_the_stdio_transport_decodes_or_fails_with_an_error(
        v in json_value(), at in 0usize..8, raw in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        use tokio_util::codec::Decoder;
        type Codec = rmcp::transport::async_rw::JsonRpcMessageCodec<rmcp::model::ClientJsonRpcMessage>;
        let message = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "t", "arguments": v}});
        for line in [
            format!("{message}\n").into_bytes(),
            format!("{}\n", with_lone_surrogates(&message, at)).into_bytes(),
            [raw.as_slice(), b"\n"].concat(),
        ] {
            let mut buf = tokio_util::bytes::BytesMut::from(line.as_slice());
            let _ = Codec::default().decode(&mut buf);
        }
    }

    #[test]
    fn any_guard_api_body_gets_a_json_answer_below_500(
        open in json_value(), args in json_value(), result in json_value(),
        tool in nasty(), at in 0usize..8,
    ) {
        let (status, _) = guard_api(|app| async move {
            let mut answers = Vec::new();
            for path in ["/v1/sessions", "/v1/decide", "/v1/observe", "/v1/events"] {
                answers.push(post(&app, path, None, open.to_string()).await);
                answers.push(post(&app, path, None, with_lone_surrogates(&open, at)).await);
            }
            let (status, session) = post(&app, "/v1/sessions", None,
                json!({"principal": "alice", "agent": "bot", "task": {"t": tool}, "instruction": tool}).to_string()).await;
            assert!(status.is_success(), "{status}: {session}");
            let id = session["id"].as_str().unwrap_or_default().to_owned();
            let token = session["token"].as_str().unwrap_or_default().to_owned();
            let auth = Some(token.as_str());
            let bodies = [
                json!({"session": id, "tool": tool, "args": args}).to_string(),
                json!({"session": id, "tool": "send_email", "args": {"to": tool, "body": args}}).to_string(),
                json!({"session": id, "call_id": tool, "tool": tool, "result": result}).to_string(),
                json!({"session": id, "kind": "user_message", "text": tool}).to_string(),
                with_lone_surrogates(&json!({"session": id, "tool": "t", "args": args}), at),
            ];
            for (path, body) in ["/v1/decide", "/v1/decide", "/v1/observe", "/v1/events", "/v1/decide"].into_iter().zip(bodies) {
                answers.push(post(&app, path, auth, body).await);
            }
            answers
        });
        for (s, body) in status {
            prop_assert!(s.as_u16() < 500, "{s}: {body}");
        }
    }
}

/// proptest's case count: `PROPTEST_CASES` when set, else `default`.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Run `f` against a zero-config guard API over an in-memory store.
fn guard_api<F, Fut>(f: F) -> (Vec<(StatusCode, Value)>, ())
where
    F: FnOnce(axum::Router) -> Fut,
    Fut: std::future::Future<Output = Vec<(StatusCode, Value)>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let rt = Arc::new(Runtime::in_memory(Config::default()).expect("the runtime starts"));
    let app = warden_gateway::api::router(rt);
    (runtime.block_on(f(app)), ())
}

async fn post(
    app: &axum::Router,
    path: &str,
    token: Option<&str>,
    body: String,
) -> (StatusCode, Value) {
    // A local agent's request: zero config answers only on a loopback host.
    let mut req = Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req.body(Body::from(body)).expect("a request");
    let res = app.clone().oneshot(req).await.expect("the router answers");
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .expect("a body");
    let value: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| panic!("{status}: not JSON: {}", String::from_utf8_lossy(&bytes)));
    (status, value)
}
