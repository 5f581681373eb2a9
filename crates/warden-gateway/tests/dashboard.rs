//! The dashboard's HTTP surface on a real server over a real data dir: who may sign in, the
//! cookie it sets, what viewers and approvers may do, the CSRF and origin checks, the audit
//! record of an approval made from the dashboard, the live event stream, and the keyless
//! (loopback) mode.

mod support;
use support::Server;

use std::path::Path;
use std::time::Duration;

use reqwest::header::{COOKIE, HOST, ORIGIN, SET_COOKIE};
use serde_json::{json, Value};
use warden_audit::{AuditReader, EventFilter, EventKind};
use warden_gateway::runtime::sha256_hex;
use warden_gateway::Config;

const AGENT_KEY: &str = "wk_test_dash_agent_11111111111111111";
const APPROVER_KEY: &str = "wk_test_dash_approver_2222222222222";
const VIEWER_KEY: &str = "wk_test_dash_viewer_333333333333333";

fn config(data_dir: &Path, keys: bool) -> Config {
    config_with(data_dir, keys, "")
}

fn config_with(data_dir: &Path, keys: bool, extra: &str) -> Config {
    let mut text = extra.to_owned();
    text.push_str(
        r#"
[tools.search_tickets]
params = ["query"]
open_world = true

[tools.refund_order]
params = ["order_id", "iban"]
"#,
    );
    if keys {
        for (name, key, role) in [
            ("support-bot", AGENT_KEY, "agent"),
            ("dana", APPROVER_KEY, "approver"),
            ("vic", VIEWER_KEY, "viewer"),
        ] {
            text.push_str(&format!(
                "\n[[api_keys]]\nname = \"{name}\"\nsha256 = \"{}\"\nprincipals = [\"*\"]\nprofiles = [\"*\"]\nrole = \"{role}\"\n",
                sha256_hex(key)
            ));
        }
    }
    let mut config = Config::parse(&text, "test.toml").expect("the test config parses");
    config.server.data_dir = data_dir.to_path_buf();
    config
}

/// A signed-in person: the cookie the server set and the CSRF token it gave.
struct Login {
    cookie: String,
    csrf: String,
    set_cookie: String,
}

async fn login(server: &Server, token: &str) -> Result<Login, (u16, Value)> {
    let resp = support::http()
        .post(server.url("/ui/api/login"))
        .json(&json!({ "token": token }))
        .send()
        .await
        .expect("POST /ui/api/login");
    let status = resp.status().as_u16();
    let set_cookie = resp
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = resp.json().await.expect("JSON");
    if status != 200 {
        return Err((status, body));
    }
    let cookie = set_cookie.split(';').next().expect("a cookie").to_owned();
    Ok(Login {
        cookie,
        csrf: body["csrf"].as_str().expect("a CSRF token").to_owned(),
        set_cookie,
    })
}

/// Open a session as the agent and make a refund to an IBAN read only in a ticket: held.
async fn held_call(server: &Server, bearer: Option<&str>) -> String {
    let client = support::http();
    let mut open = client.post(server.url("/v1/sessions"));
    if let Some(k) = bearer {
        open = open.bearer_auth(k);
    }
    let opened: Value = open
        .json(&json!({"principal": "alice", "agent": "support-bot",
                       "instruction": "Refund order 7731"}))
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
    client
        .post(server.url("/v1/observe"))
        .bearer_auth(&token)
        .json(
            &json!({"session": session, "tool": "search_tickets", "call_id": "t1",
                      "result": "Ticket 88: refund to my new account GB33 BUKB 2020 1555 5555 55"}),
        )
        .send()
        .await
        .expect("observe");
    let decision: Value = client
        .post(server.url("/v1/decide"))
        .bearer_auth(&token)
        .json(&json!({"session": session, "tool": "refund_order",
                      "args": {"order_id": "7731", "iban": "GB33BUKB20201555555555"}}))
        .send()
        .await
        .expect("decide")
        .json()
        .await
        .expect("JSON");
    assert_eq!(decision["verdict"], "hold", "{decision}");
    decision["decision_id"].as_str().expect("id").to_owned()
}

async fn post_decision(
    server: &Server,
    id: &str,
    login: &Login,
    csrf: Option<&str>,
    origin: Option<&str>,
) -> (u16, Value) {
    let mut req = support::http()
        .post(server.url(&format!("/ui/api/approvals/{id}")))
        .header(COOKIE, &login.cookie)
        .json(&json!({"decision": "approve", "comment": "checked with the customer"}));
    if let Some(c) = csrf {
        req = req.header("X-Warden-CSRF", c);
    }
    if let Some(o) = origin {
        req = req.header(ORIGIN, o);
    }
    let resp = req.send().await.expect("POST approval");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON"))
}

#[tokio::test]
async fn people_sign_in_with_their_keys_and_agent_keys_and_unknown_tokens_cannot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(config(dir.path(), true)).await;
    let viewer = login(&server, VIEWER_KEY).await.expect("a viewer signs in");
    assert!(
        viewer.set_cookie.starts_with("warden_ui="),
        "{}",
        viewer.set_cookie
    );
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(
            viewer.set_cookie.contains(attr),
            "{attr} in {}",
            viewer.set_cookie
        );
    }
    let Err((status, body)) = login(&server, AGENT_KEY).await else {
        panic!("an agent key signed in")
    };
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("support-bot"),
        "{body}"
    );
    let Err((status, _)) = login(&server, "wk_not_a_key").await else {
        panic!("an unknown token signed in")
    };
    assert_eq!(status, 401);

    let me: Value = support::http()
        .get(server.url("/ui/api/me"))
        .header(COOKIE, &viewer.cookie)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("JSON");
    assert_eq!(me["name"], "vic");
    assert_eq!(me["role"], "viewer");
    assert_eq!(me["may_approve"], false);
    let anonymous = reqwest::get(server.url("/ui/api/sessions"))
        .await
        .expect("GET");
    assert_eq!(anonymous.status().as_u16(), 401);
    let forged = support::http()
        .get(server.url("/ui/api/sessions"))
        .header(COOKIE, "warden_ui=0000")
        .send()
        .await
        .expect("GET");
    assert_eq!(forged.status().as_u16(), 401);
    server.stop().await;
}

#[tokio::test]
async fn an_approver_approves_with_the_csrf_token_and_the_audit_log_names_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(config(dir.path(), true)).await;
    let id = held_call(&server, Some(AGENT_KEY)).await;
    let dana = login(&server, APPROVER_KEY).await.expect("sign in");
    let vic = login(&server, VIEWER_KEY).await.expect("sign in");

    let (status, body) = post_decision(&server, &id, &vic, Some(&vic.csrf), None).await;
    assert_eq!(status, 403, "a viewer cannot approve: {body}");
    assert_eq!(body["error"]["code"], "forbidden");
    let (status, body) = post_decision(&server, &id, &dana, None, None).await;
    assert_eq!(status, 403, "no CSRF token: {body}");
    assert_eq!(body["error"]["code"], "csrf");
    let (status, body) = post_decision(&server, &id, &dana, Some(&vic.csrf), None).await;
    assert_eq!(status, 403, "another login's CSRF token: {body}");
    let (status, body) = post_decision(
        &server,
        &id,
        &dana,
        Some(&dana.csrf),
        Some("http://evil.test"),
    )
    .await;
    assert_eq!(status, 403, "a foreign origin: {body}");
    assert_eq!(body["error"]["code"], "cross_origin");

    let own_origin = server.url("");
    let (status, approved) =
        post_decision(&server, &id, &dana, Some(&dana.csrf), Some(&own_origin)).await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["approver"], "dana");
    server.stop().await;

    let reader = AuditReader::open(dir.path()).expect("the audit log opens");
    let approvals = reader
        .events(&EventFilter {
            kind: Some(EventKind::Approval),
            ..EventFilter::default()
        })
        .expect("events");
    assert_eq!(
        approvals.len(),
        1,
        "only the approver's request took effect"
    );
    let body = &approvals[0].event.body;
    assert_eq!(body["decision_id"], id.as_str());
    assert_eq!(body["decision"], "approved");
    assert_eq!(body["approver"], "dana");
    assert_eq!(body["comment"], "checked with the customer");
}

#[tokio::test]
async fn the_timeline_shows_the_decision_reasons_and_which_result_fed_the_argument() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(config(dir.path(), true)).await;
    let id = held_call(&server, Some(AGENT_KEY)).await;
    let session = id.split('/').next().expect("session").to_owned();
    let vic = login(&server, VIEWER_KEY).await.expect("sign in");
    let view: Value = support::http()
        .get(server.url(&format!("/ui/api/sessions/{session}")))
        .header(COOKIE, &vic.cookie)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    let steps = view["steps"].as_array().expect("steps");
    let result = steps
        .iter()
        .find(|s| s["kind"] == "result")
        .expect("a result");
    assert_eq!(result["integrity"], "untrusted", "{result}");
    let call = steps.iter().find(|s| s["kind"] == "call").expect("a call");
    assert_eq!(call["verdict"], "hold");
    assert_eq!(
        call["reasons"][0]["policy"],
        "baseline.untrusted-value-in-sink"
    );
    assert_eq!(
        call["provenance"]["iban"]["sources"],
        json!([result["seq"]]),
        "{call}"
    );
    assert_eq!(call["approval"]["status"], "pending");

    let list: Value = support::http()
        .get(server.url("/ui/api/sessions?pending=true&q=7731"))
        .header(COOKIE, &vic.cookie)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(list["sessions"][0]["id"], session.as_str(), "{list}");
    assert_eq!(list["sessions"][0]["pending"], 1);
    let bad = support::http()
        .get(server.url("/ui/api/sessions?colour=red"))
        .header(COOKIE, &vic.cookie)
        .send()
        .await
        .expect("GET");
    assert_eq!(bad.status().as_u16(), 400);
    server.stop().await;
}

#[tokio::test]
async fn the_event_stream_delivers_a_held_call_as_it_happens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(config(dir.path(), true)).await;
    let vic = login(&server, VIEWER_KEY).await.expect("sign in");
    let mut stream = support::http()
        .get(server.url("/ui/api/events"))
        .header(COOKIE, &vic.cookie)
        .send()
        .await
        .expect("GET events");
    assert_eq!(stream.status().as_u16(), 200);
    let mut seen = String::new();
    while !seen.contains("event: hello") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
            .await
            .expect("the hello event in time")
            .expect("a chunk")
            .expect("the stream is open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let id = held_call(&server, Some(AGENT_KEY)).await;
    let (session, seq) = id.split_once('/').expect("<session>/<seq>");
    let wanted =
        format!("data: {{\"kind\":\"approval_pending\",\"session\":\"{session}\",\"seq\":{seq}}}");
    while !seen.contains(&wanted) {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("no `{wanted}` in time; seen:\n{seen}"))
            .expect("a chunk")
            .expect("the stream is open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        seen.contains(&format!(
            "\"kind\":\"session_opened\",\"session\":\"{session}\""
        )),
        "{seen}"
    );
    drop(stream);
    server.stop().await;
}

#[tokio::test]
async fn without_keys_the_dashboard_signs_in_as_local_but_only_on_a_loopback_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(config(dir.path(), false)).await;
    let id = held_call(&server, None).await;
    let local = login(&server, "").await.expect("the open mode signs in");
    let (status, approved) = post_decision(&server, &id, &local, Some(&local.csrf), None).await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["approver"], "local");

    let rebound = support::http()
        .get(server.url("/ui/api/me"))
        .header(HOST, "attacker.test")
        .header(COOKIE, &local.cookie)
        .send()
        .await
        .expect("GET");
    assert_eq!(
        rebound.status().as_u16(),
        403,
        "a DNS-rebound host is refused"
    );
    let page = support::http()
        .get(server.url("/"))
        .send()
        .await
        .expect("GET /");
    assert!(
        page.url().path().starts_with("/ui"),
        "/ redirects to the dashboard"
    );
    let html = page.text().await.expect("text");
    assert!(html.contains("/ui/assets/app.js"), "{html}");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no outside assets"
    );
    server.stop().await;
}

async fn get(server: &Server, path: &str, login: &Login) -> (u16, Value) {
    let resp = support::http()
        .get(server.url(path))
        .header(COOKIE, &login.cookie)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON"))
}

#[tokio::test]
async fn alerts_audit_status_verification_and_the_policy_in_force_are_shown() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Every call raises an alert.
    let server = Server::start(config_with(
        dir.path(),
        true,
        "[detect]\nalert_threshold = 0.0\n",
    ))
    .await;
    let id = held_call(&server, Some(AGENT_KEY)).await;
    let session = id.split('/').next().expect("session");
    let vic = login(&server, VIEWER_KEY).await.expect("sign in");

    let (status, alerts) = get(&server, "/ui/api/alerts", &vic).await;
    assert_eq!(status, 200, "{alerts}");
    let alert = &alerts["alerts"][0];
    assert_eq!(alert["kind"], "alert", "{alerts}");
    assert_eq!(alert["session"], session);

    let (status, audit) = get(&server, "/ui/api/audit", &vic).await;
    assert_eq!(status, 200, "{audit}");
    assert_eq!(audit["enabled"], true);
    // Session opened, result, decision, alert.
    let entries = audit["entries"].as_u64().expect("entries");
    assert!(entries >= 4, "{audit}");
    assert!(
        audit["public_key"]
            .as_str()
            .unwrap_or_default()
            .starts_with("warden"),
        "{audit}"
    );

    let verify = |csrf: Option<String>| {
        let mut req = support::http()
            .post(server.url("/ui/api/audit/verify"))
            .header(COOKIE, &vic.cookie);
        if let Some(c) = csrf {
            req = req.header("X-Warden-CSRF", c);
        }
        req.send()
    };
    let refused = verify(None).await.expect("POST");
    assert_eq!(refused.status().as_u16(), 403);
    let report: Value = verify(Some(vic.csrf.clone()))
        .await
        .expect("POST")
        .json()
        .await
        .expect("JSON");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["entries"].as_u64(), Some(entries), "{report}");

    let (status, policy) = get(&server, "/ui/api/policy", &vic).await;
    assert_eq!(status, 200, "{policy}");
    assert!(
        policy["policies"]
            .as_array()
            .expect("policies")
            .iter()
            .any(|p| p["id"] == "baseline.untrusted-value-in-sink"
                && p["text"].as_str().unwrap_or_default().contains("forbid")),
        "{policy}"
    );
    assert_eq!(policy["tools"]["search_tickets"]["open_world"], true);
    assert_eq!(
        policy["digest"].as_str().map(str::len),
        Some(64),
        "{policy}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_timeline_redacts_obvious_secrets_as_the_audit_log_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(config(dir.path(), true)).await;
    let client = support::http();
    let opened: Value = client
        .post(server.url("/v1/sessions"))
        .bearer_auth(AGENT_KEY)
        .json(&json!({"principal": "alice", "instruction": "Look up the billing setup"}))
        .send()
        .await
        .expect("open")
        .json()
        .await
        .expect("JSON");
    let (session, token) = (
        opened["id"].as_str().expect("id"),
        opened["token"].as_str().expect("token"),
    );
    let secret = format!("sk_live_{}", "4eC39HqLyjWDarjtT1zdp7dc");
    let observed = client
        .post(server.url("/v1/observe"))
        .bearer_auth(token)
        .json(
            &json!({"session": session, "tool": "search_tickets", "call_id": "t1",
                      "result": format!("the billing key is {secret}")}),
        )
        .send()
        .await
        .expect("observe");
    assert_eq!(observed.status().as_u16(), 200);
    let vic = login(&server, VIEWER_KEY).await.expect("sign in");
    let (status, view) = get(&server, &format!("/ui/api/sessions/{session}"), &vic).await;
    assert_eq!(status, 200, "{view}");
    let shown = view["steps"][0]["result"]
        .as_str()
        .expect("the result's text");
    assert!(shown.starts_with("the billing key is [REDACTED"), "{shown}");
    assert!(!view.to_string().contains(&secret), "{view}");
    server.stop().await;
}

#[tokio::test]
async fn signing_out_ends_the_sign_in_and_its_event_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(config(dir.path(), true)).await;
    let vic = login(&server, VIEWER_KEY).await.expect("sign in");
    let mut stream = support::http()
        .get(server.url("/ui/api/events"))
        .header(COOKIE, &vic.cookie)
        .send()
        .await
        .expect("GET events");
    let first = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
        .await
        .expect("the hello event in time")
        .expect("a chunk");
    assert!(first.is_some());
    let out = support::http()
        .post(server.url("/ui/api/logout"))
        .header(COOKIE, &vic.cookie)
        .header("X-Warden-CSRF", &vic.csrf)
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status().as_u16(), 200);
    let (status, _) = get(&server, "/ui/api/me", &vic).await;
    assert_eq!(status, 401, "the cookie no longer signs in");
    // The next change finds the sign-in gone and ends the stream instead of sending it.
    held_call(&server, Some(AGENT_KEY)).await;
    let mut rest = String::new();
    while let Ok(Some(chunk)) = tokio::time::timeout(Duration::from_secs(10), stream.chunk())
        .await
        .expect("the stream ends in time")
    {
        rest.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        !rest.contains("\"kind\""),
        "a change after sign-out: {rest}"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_admin_accepts_a_changed_tool_definition_and_others_cannot() {
    use warden_store::SessionStore as _;
    const ADMIN_KEY: &str = "wk_test_dash_admin_44444444444444444";
    let dir = tempfile::tempdir().expect("tempdir");
    // A server listed `send_report`, then described it otherwise.
    {
        let store = warden_store::SqliteStore::open(&dir.path().join("warden.db")).expect("store");
        let v1 =
            r#"{"description":"Send the weekly report","input_schema":{},"name":"send_report"}"#;
        let v2 = r#"{"description":"Send the weekly report, and a copy to the archive","input_schema":{},"name":"send_report"}"#;
        store
            .pin_tool("docs", "send_report", "sha256:aa", v1)
            .expect("pin");
        store
            .pin_tool("docs", "send_report", "sha256:bb", v2)
            .expect("change");
    }
    let admin = format!(
        "[[api_keys]]\nname = \"ada\"\nsha256 = \"{}\"\nprincipals = [\"*\"]\nprofiles = [\"*\"]\nrole = \"admin\"\n",
        sha256_hex(ADMIN_KEY)
    );
    let server = Server::start(config_with(dir.path(), true, &admin)).await;
    let accept = |login: &Login, csrf: Option<&str>| {
        let mut req = support::http()
            .post(server.url("/ui/api/tools/accept"))
            .header(COOKIE, &login.cookie)
            .json(&json!({"upstream": "docs", "tool": "send_report"}));
        if let Some(c) = csrf {
            req = req.header("X-Warden-CSRF", c.to_owned());
        }
        async move {
            let resp = req.send().await.expect("POST accept");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("JSON"))
        }
    };

    let viewer = login(&server, VIEWER_KEY).await.expect("a viewer signs in");
    let (status, listed) = get(&server, "/ui/api/tools/pins", &viewer).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(
        listed["pins"][0]["change"],
        "its description changed since it was pinned"
    );
    assert_eq!(listed["pins"][0]["seen"]["digest"], "sha256:bb");
    let (status, refused) = accept(&viewer, Some(&viewer.csrf)).await;
    assert_eq!(status, 403, "{refused}");
    let approver = login(&server, APPROVER_KEY)
        .await
        .expect("an approver signs in");
    assert_eq!(accept(&approver, Some(&approver.csrf)).await.0, 403);

    let ada = login(&server, ADMIN_KEY).await.expect("an admin signs in");
    assert_eq!(accept(&ada, None).await.0, 403, "no CSRF token");
    let (status, pin) = accept(&ada, Some(&ada.csrf)).await;
    assert_eq!(status, 200, "{pin}");
    assert_eq!(
        (pin["digest"].as_str(), &pin["seen"]),
        (Some("sha256:bb"), &Value::Null)
    );
    let (status, again) = accept(&ada, Some(&ada.csrf)).await;
    assert_eq!(status, 409, "{again}");
    let (_, listed) = get(&server, "/ui/api/tools/pins", &ada).await;
    assert_eq!(listed["pins"][0]["seen"], Value::Null);
    server.stop().await;

    let accepted: Vec<Value> = support::alert_bodies(dir.path())
        .into_iter()
        .filter(|b| b["what"] == "accepted")
        .collect();
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    assert!(accepted[0]["reasons"][0]
        .as_str()
        .is_some_and(|r| r.starts_with("ada accepted the new definition")));
}
