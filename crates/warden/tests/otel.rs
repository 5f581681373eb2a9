//! OpenTelemetry export end to end: `warden serve` with `[telemetry] endpoint` pointed at a test
//! OTLP/HTTP receiver (axum, decoding the protobuf with `opentelemetry-proto`), calls through the
//! guard API and through `/mcp` in front of a real MCP server, and the spans that arrive: names,
//! GenAI attributes, Warden's decision attributes, parents, and the caller's trace id.

mod support;
use support::{call, filesystem_server, start_serve, Client};

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{status::StatusCode, Span};
use prost::Message as _;
use rmcp::model::{CallToolRequestParams, JsonObject};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt as _;
use serde_json::{json, Value};

#[derive(Default)]
struct Received {
    requests: Vec<ExportTraceServiceRequest>,
    /// (content-type, the test header) of each export.
    headers: Vec<(String, String)>,
}

/// A test OTLP/HTTP receiver on a free port: `POST /v1/traces` with a protobuf body.
async fn receiver() -> (String, Arc<Mutex<Received>>) {
    let got = Arc::new(Mutex::new(Received::default()));
    let state = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let state = state.clone();
            async move {
                let req = ExportTraceServiceRequest::decode(body)
                    .expect("the body is an OTLP ExportTraceServiceRequest");
                let header = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned()
                };
                let mut s = state.lock().expect("lock");
                s.headers
                    .push((header("content-type"), header("x-collector-key")));
                s.requests.push(req);
                // An empty ExportTraceServiceResponse: everything accepted.
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), got)
}

fn spans(got: &Mutex<Received>) -> Vec<Span> {
    got.lock()
        .expect("lock")
        .requests
        .iter()
        .flat_map(|r| &r.resource_spans)
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| ss.spans.clone())
        .collect()
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn string(span: &Span, key: &str) -> String {
    match attr(&span.attributes, key) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        other => panic!("{}: attribute {key} is not a string: {other:?}", span.name),
    }
}

fn strings(span: &Span, key: &str) -> Vec<String> {
    match attr(&span.attributes, key) {
        Some(any_value::Value::ArrayValue(a)) => a
            .values
            .iter()
            .filter_map(|v| match &v.value {
                Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                _ => None,
            })
            .collect(),
        other => panic!("{}: attribute {key} is not an array: {other:?}", span.name),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const MCP_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_a_session_and_its_calls_reach_an_otlp_receiver() {
    let (endpoint, got) = receiver().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).expect("mkdir");
    let cedar = dir.path().join("ops.cedar");
    std::fs::write(
        &cedar,
        "@id(\"ops.no-deletes\") @reason(\"accounts are never deleted by agents\")\n\
         forbid(principal, action, resource == Warden::Tool::\"delete_account\");\n",
    )
    .expect("write policy");
    let upstream = format!(
        "exec node '{}' '{}'",
        filesystem_server().display(),
        files.display()
    );
    let config = dir.path().join("warden.toml");
    std::fs::write(
        &config,
        format!(
            "[policy]\nfiles = [{cedar:?}]\n\n\
             [telemetry]\nendpoint = {endpoint:?}\nservice_name = \"warden-test\"\nbatch_delay_ms = 100\n\
             headers = {{ x-collector-key = \"k1\" }}\n\n\
             [[upstreams]]\nname = \"files\"\ncommand = [\"sh\", \"-c\", {upstream:?}]\n"
        ),
    )
    .expect("write config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.env_remove("WARDEN_CONFIG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("state"));
    let (_serve, addr) = start_serve(cmd);

    let http = support::http();
    let opened: Value = http
        .post(format!("http://{addr}/v1/sessions"))
        .json(&json!({"principal": "alice", "agent": "bot", "instruction": "Tidy my account"}))
        .send()
        .await
        .expect("open")
        .json()
        .await
        .expect("JSON");
    let (session, token) = (
        opened["id"].as_str().expect("id").to_owned(),
        opened["token"].as_str().expect("token").to_owned(),
    );
    let decide = |tool: &str, call_id: &str, traceparent: Option<String>| {
        let mut req = http
            .post(format!("http://{addr}/v1/decide"))
            .bearer_auth(&token)
            .json(&json!({"session": session, "tool": tool, "call_id": call_id, "args": {}}));
        if let Some(tp) = traceparent {
            req = req.header("traceparent", tp);
        }
        async move {
            let v: Value = req
                .send()
                .await
                .expect("decide")
                .json()
                .await
                .expect("JSON");
            v
        }
    };
    let allow_answer = decide(
        "get_balance",
        "c1",
        Some(format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")),
    )
    .await;
    assert_eq!(allow_answer["verdict"], "allow", "{allow_answer}");
    let denied = decide("delete_account", "c2", None).await;
    assert_eq!(denied["verdict"], "deny", "{denied}");

    // The same session over MCP, in front of a real MCP server.
    let transport = StreamableHttpClientTransport::with_client(
        support::http(),
        StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}/mcp"))
            .auth_header(token.clone()),
    );
    let client: Client = ().serve(transport).await.expect("initialize through /mcp");
    call(&client, "files__list_allowed_directories", json!({})).await;
    // A host that passes its trace context in the request's `_meta`.
    let mut params = CallToolRequestParams::new("files__list_allowed_directories")
        .with_arguments(JsonObject::new());
    params.meta = Some(
        serde_json::from_value(json!({"traceparent": format!("00-{MCP_TRACE}-{CALLER_SPAN}-01")}))
            .expect("a _meta object"),
    );
    client
        .call_tool(params)
        .await
        .expect("tools/call with _meta");
    let _ = client.cancel().await;

    // Batches leave every 100 ms; wait for the five spans.
    let mut all = Vec::new();
    for _ in 0..100 {
        all = spans(&got);
        if all.len() >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
    let find = |name: &str| {
        all.iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name} in {names:?}"))
    };

    let agent = find("invoke_agent bot");
    assert_eq!(string(agent, "gen_ai.operation.name"), "invoke_agent");
    assert_eq!(string(agent, "gen_ai.conversation.id"), session);
    assert_eq!(string(agent, "gen_ai.agent.name"), "bot");
    assert_eq!(string(agent, "warden.session.principal"), "alice");

    let allowed = find("execute_tool get_balance");
    assert_eq!(string(allowed, "gen_ai.operation.name"), "execute_tool");
    assert_eq!(string(allowed, "gen_ai.tool.name"), "get_balance");
    assert_eq!(string(allowed, "gen_ai.tool.call.id"), "c1");
    assert_eq!(string(allowed, "gen_ai.conversation.id"), session);
    assert_eq!(string(allowed, "warden.decision"), "allow");
    assert_eq!(
        string(allowed, "warden.decision.id"),
        allow_answer["decision_id"].as_str().expect("decision_id")
    );
    assert_eq!(
        strings(allowed, "warden.policy_ids"),
        ["baseline.no-profile"]
    );
    // The caller's traceparent: its trace, under its span, linked to the session's span.
    assert_eq!(hex(&allowed.trace_id), CALLER_TRACE);
    assert_eq!(hex(&allowed.parent_span_id), CALLER_SPAN);
    assert_eq!(allowed.links.len(), 1);
    assert_eq!(allowed.links[0].span_id, agent.span_id);
    assert!(attr(&allowed.attributes, "mcp.method.name").is_none());

    let denied = find("execute_tool delete_account");
    assert_eq!(string(denied, "warden.decision"), "deny");
    assert!(
        strings(denied, "warden.policy_ids").contains(&"ops.no-deletes".to_owned()),
        "{denied:?}"
    );
    assert!(strings(denied, "warden.reasons")
        .iter()
        .any(|r| r.contains("never deleted")));
    assert_eq!(
        denied.status.as_ref().map(|s| s.code),
        Some(StatusCode::Error as i32)
    );
    // No traceparent: a child of the session's invoke_agent span, in its trace.
    assert_eq!(denied.trace_id, agent.trace_id);
    assert_eq!(denied.parent_span_id, agent.span_id);

    let over_mcp: Vec<&Span> = all
        .iter()
        .filter(|s| s.name == "execute_tool files__list_allowed_directories")
        .collect();
    assert_eq!(over_mcp.len(), 2, "{names:?}");
    for span in &over_mcp {
        assert_eq!(string(span, "mcp.method.name"), "tools/call");
        assert_eq!(string(span, "warden.decision"), "allow");
    }
    assert_eq!(over_mcp[0].parent_span_id, agent.span_id);
    assert_eq!(over_mcp[0].trace_id, agent.trace_id);
    // `_meta.traceparent`: the host's trace, under its span.
    assert_eq!(hex(&over_mcp[1].trace_id), MCP_TRACE);
    assert_eq!(hex(&over_mcp[1].parent_span_id), CALLER_SPAN);

    let received = got.lock().expect("lock");
    let resource = received.requests[0]
        .resource_spans
        .first()
        .and_then(|rs| rs.resource.as_ref())
        .expect("a resource");
    assert!(
        matches!(attr(&resource.attributes, "service.name"), Some(any_value::Value::StringValue(s)) if s == "warden-test"),
        "{resource:?}"
    );
    assert_eq!(
        received.headers[0],
        ("application/x-protobuf".to_owned(), "k1".to_owned()),
        "protobuf, with the configured header"
    );
}
