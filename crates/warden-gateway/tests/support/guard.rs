//! The guard API's client side, as an agent framework drives it: open a session, decide a call,
//! observe its result; each asserts the status an agent relies on.

use serde_json::{json, Value};

use super::Server;

/// An open session: its id and its token.
pub struct Opened {
    pub id: String,
    pub token: String,
}

pub async fn open(
    client: &reqwest::Client,
    server: &Server,
    key: Option<&str>,
    body: Value,
) -> Opened {
    let mut req = client.post(server.url("/v1/sessions")).json(&body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.expect("POST /v1/sessions");
    let status = resp.status();
    let v: Value = resp.json().await.expect("a JSON body");
    assert_eq!(status, 201, "opening a session: {v}");
    Opened {
        id: v["id"].as_str().expect("id").to_owned(),
        token: v["token"].as_str().expect("token").to_owned(),
    }
}

pub async fn post_ok(
    client: &reqwest::Client,
    server: &Server,
    s: &Opened,
    path: &str,
    body: Value,
) -> Value {
    let resp = client
        .post(server.url(path))
        .bearer_auth(&s.token)
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: {e}"));
    let status = resp.status();
    let v: Value = resp.json().await.expect("a JSON body");
    assert_eq!(status, 200, "POST {path} {body}: {v}");
    v
}

pub async fn decide(
    client: &reqwest::Client,
    server: &Server,
    s: &Opened,
    tool: &str,
    args: Value,
) -> Value {
    post_ok(
        client,
        server,
        s,
        "/v1/decide",
        json!({"session": s.id, "tool": tool, "args": args}),
    )
    .await
}

pub async fn observe(
    client: &reqwest::Client,
    server: &Server,
    s: &Opened,
    tool: &str,
    call_id: &str,
    result: &str,
) -> Value {
    post_ok(
        client,
        server,
        s,
        "/v1/observe",
        json!({"session": s.id, "tool": tool, "call_id": call_id, "result": result}),
    )
    .await
}

/// The session as `GET /v1/sessions/{id}` shows it to its token's holder: its steps as stored.
pub async fn session_view(client: &reqwest::Client, server: &Server, s: &Opened) -> Value {
    let resp = client
        .get(server.url(&format!("/v1/sessions/{}", s.id)))
        .bearer_auth(&s.token)
        .send()
        .await
        .expect("GET session");
    assert_eq!(resp.status(), 200, "reading the session");
    resp.json().await.expect("a JSON body")
}
