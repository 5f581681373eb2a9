//! The web dashboard at `/ui/`, on the guard API's listener: sign-in with people's API keys
//! (`viewer`, `approver`, `admin`), a cookie session with a CSRF token, JSON under `/ui/api/…`
//! and live changes over SSE (`/ui/api/events`). Assets are embedded; nothing is fetched from
//! elsewhere.
//!
//! A sign-in is an HttpOnly, `SameSite=Strict` cookie naming an in-memory login (the cookie's
//! SHA-256 is the key; a restart signs everyone out). Every state-changing request must carry
//! the login's CSRF token in `X-Warden-CSRF`, and an `Origin` (when the browser sends one) equal
//! to the request's own host. With no `[[api_keys]]` the server is loopback-only
//! (`Config::validate`); the dashboard then signs anyone in as `local` (role approver) but
//! answers only requests whose `Host` is a loopback name, so a web page cannot reach it through
//! DNS rebinding.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;
use warden_audit::{redact_secrets, EventFilter, EventKind, VerifyOptions};
use warden_policy::Step;
use warden_store::ApprovalStatus;

use crate::api::{blocking, ApiError, JsonBody};
use crate::config::Role;
use crate::runtime::{now_ms, random_hex, sha256_hex, Runtime};

const COOKIE: &str = "warden_ui";
const CSRF_HEADER: &str = "x-warden-csrf";
/// How long a sign-in lasts.
const LOGIN_TTL_MS: u64 = 12 * 3600 * 1000;
/// Sign-ins kept at once; past it, new ones are refused until old ones expire.
const MAX_LOGINS: usize = 10_000;
/// The name approvals are recorded under when no `[[api_keys]]` are configured.
pub const LOCAL_USER: &str = "local";
/// The longest text of one result the timeline shows.
const RESULT_SHOWN: usize = 4000;
const SESSIONS_LISTED: usize = 500;
const ALERTS_LISTED: usize = 200;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const LOGIN_HTML: &str = include_str!("../assets/login.html");
const APP_JS: &str = include_str!("../assets/app.js");
const LOGIN_JS: &str = include_str!("../assets/login.js");
const APP_CSS: &str = include_str!("../assets/app.css");

/// Only the embedded assets: scripts and styles from this origin, nothing inline, no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

struct Dashboard {
    rt: Arc<Runtime>,
    /// SHA-256 of a sign-in cookie → the login.
    logins: Mutex<HashMap<String, Login>>,
    /// Ends the event streams when the server shuts down (they would hold its graceful stop).
    shutdown: CancellationToken,
    /// Wakes the event streams when someone signs out, so a signed-out tab's stream ends at once
    /// rather than at the next change (which may never come).
    signed_out: tokio::sync::Notify,
}

/// A person signed in to the dashboard.
#[derive(Debug, Clone)]
struct Login {
    /// SHA-256 of the sign-in cookie: the login's key in `Dashboard::logins`.
    key: String,
    /// The API key's name (`local` when none are configured): what approvals record.
    name: String,
    role: Role,
    csrf: String,
    expires_ms: u64,
}

impl Login {
    fn view(&self, open: bool) -> Value {
        json!({
            "name": self.name,
            "role": self.role.as_str(),
            "may_approve": self.role.may_decide_approvals(),
            "csrf": self.csrf,
            "expires_ms": self.expires_ms,
            "open": open,
        })
    }
}

/// The dashboard's routes; `shutdown` ends its event streams.
pub fn router(rt: Arc<Runtime>, shutdown: CancellationToken) -> Router {
    let dash = Arc::new(Dashboard {
        rt,
        logins: Mutex::new(HashMap::new()),
        shutdown,
        signed_out: tokio::sync::Notify::new(),
    });
    let signed_in = Router::new()
        .route("/ui/api/me", get(me))
        .route("/ui/api/logout", post(logout))
        .route("/ui/api/sessions", get(sessions))
        .route("/ui/api/sessions/{id}", get(session))
        .route("/ui/api/approvals", get(approvals))
        // A decision id holds a `/` (`<session>/<seq>`): the id is the rest of the path.
        .route("/ui/api/approvals/{*id}", post(resolve))
        .route("/ui/api/alerts", get(alerts))
        .route("/ui/api/tools/pins", get(pins))
        .route("/ui/api/tools/accept", post(accept_tool))
        .route("/ui/api/audit", get(audit_status))
        .route("/ui/api/audit/verify", post(audit_verify))
        .route("/ui/api/policy", get(policy))
        .route("/ui/api/events", get(events))
        .route_layer(middleware::from_fn_with_state(dash.clone(), require_login));
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(|| async { html(INDEX_HTML) }))
        .route("/ui/login", get(|| async { html(LOGIN_HTML) }))
        .route("/ui/assets/{name}", get(asset))
        .route("/ui/api/login", get(login_info).post(login))
        .merge(signed_in)
        .layer(middleware::from_fn(crate::api::json_errors))
        .layer(middleware::from_fn_with_state(dash.clone(), guard_requests))
        .layer(DefaultBodyLimit::max(64 * 1024))
        .with_state(dash)
}

fn html(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

async fn asset(Path(name): Path<String>) -> Response {
    let (kind, body) = match name.as_str() {
        "app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "login.js" => ("text/javascript; charset=utf-8", LOGIN_JS),
        "app.css" => ("text/css; charset=utf-8", APP_CSS),
        _ => {
            return ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such asset")
                .into_response()
        }
    };
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// Whether a `Host` header names this machine's loopback interface.
pub(crate) fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// For every dashboard request: the DNS-rebinding check of the open (keyless) mode, the
/// cross-origin check of state-changing requests, and the security headers of every answer.
async fn guard_requests(State(dash): State<Arc<Dashboard>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let refusal = if dash.rt.config().api_keys.is_empty() && !loopback_host(&host) {
        Some(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "no [[api_keys]] are configured, so the dashboard answers only on a loopback \
                 name (localhost, 127.0.0.1); this request was for host `{host}`"
            ),
        ))
    } else if !matches!(*req.method(), Method::GET | Method::HEAD) {
        cross_origin(req.headers(), &host)
    } else {
        None
    };
    let mut response = match refusal {
        Some(r) => r.into_response(),
        None => next.run(req).await,
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A state-changing request a browser sent from another site: its `Origin` is not this host,
/// or its `Sec-Fetch-Site` says so.
pub(crate) fn cross_origin(headers: &HeaderMap, host: &str) -> Option<ApiError> {
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    if let Some(origin) = origin {
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        if authority != Some(host) {
            return Some(ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_origin",
                format!("a request from origin `{origin}` may not change anything here"),
            ));
        }
    }
    let site = headers.get("sec-fetch-site").and_then(|s| s.to_str().ok());
    if matches!(site, Some("cross-site" | "same-site")) {
        return Some(ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_origin",
            "a request from another site may not change anything here",
        ));
    }
    None
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// Equal strings, compared in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Signed-in routes: the login from the cookie, and for state-changing requests its CSRF token.
async fn require_login(
    State(dash): State<Arc<Dashboard>>,
    mut req: Request,
    next: Next,
) -> Response {
    let login = cookie_value(req.headers()).and_then(|c| {
        let key = sha256_hex(&c);
        let mut logins = dash.logins.lock().ok()?;
        match logins.get(&key) {
            Some(l) if l.expires_ms > now_ms() => Some(l.clone()),
            Some(_) => {
                logins.remove(&key);
                None
            }
            None => None,
        }
    });
    let Some(login) = login else {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "not signed in (or the sign-in expired): sign in at /ui/login",
        )
        .into_response();
    };
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !same_secret(sent, &login.csrf) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "this request lacks the sign-in's CSRF token (header `X-Warden-CSRF`, from \
                 GET /ui/api/me)",
            )
            .into_response();
        }
    }
    req.extensions_mut().insert(login);
    next.run(req).await
}

async fn login_info(State(dash): State<Arc<Dashboard>>) -> Json<Value> {
    Json(json!({ "open": dash.rt.config().api_keys.is_empty() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    #[serde(default)]
    token: String,
}

async fn login(
    State(dash): State<Arc<Dashboard>>,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Response, ApiError> {
    let keys = &dash.rt.config().api_keys;
    let token = body.token.trim();
    let (name, role) = if keys.is_empty() {
        if !token.is_empty() {
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "token",
                "no [[api_keys]] are configured, so the dashboard is open on this machine: \
                 sign in with an empty token",
            ));
        }
        (LOCAL_USER.to_owned(), Role::Approver)
    } else {
        if token.is_empty() {
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "token",
                "paste your access token (an API key with role viewer, approver or admin)",
            ));
        }
        let hash = sha256_hex(token);
        let Some(key) = keys.iter().find(|k| k.sha256.eq_ignore_ascii_case(&hash)) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this token is not one of the configured [[api_keys]]",
            ));
        };
        if !key.role.may_sign_in() {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "API key `{}` is an agent's key and cannot sign in; people use keys with \
                     role `viewer`, `approver` or `admin`",
                    key.name
                ),
            ));
        }
        (key.name.clone(), key.role)
    };
    let cookie = random_hex(32)?;
    let login = Login {
        key: sha256_hex(&cookie),
        name,
        role,
        csrf: random_hex(32)?,
        expires_ms: now_ms() + LOGIN_TTL_MS,
    };
    {
        let mut logins = dash.logins.lock().map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "sign-ins lock poisoned",
            )
        })?;
        let now = now_ms();
        logins.retain(|_, l| l.expires_ms > now);
        if logins.len() >= MAX_LOGINS {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "too many open sign-ins; try again later",
            ));
        }
        logins.insert(login.key.clone(), login.clone());
    }
    tracing::info!(user = %login.name, role = login.role.as_str(), "dashboard sign-in");
    let set_cookie = format!(
        "{COOKIE}={cookie}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}",
        LOGIN_TTL_MS / 1000
    );
    let open = keys.is_empty();
    Ok(([(header::SET_COOKIE, set_cookie)], Json(login.view(open))).into_response())
}

async fn logout(State(dash): State<Arc<Dashboard>>, headers: HeaderMap) -> Response {
    if let (Some(c), Ok(mut logins)) = (cookie_value(&headers), dash.logins.lock()) {
        logins.remove(&sha256_hex(&c));
    }
    dash.signed_out.notify_waiters();
    (
        [(
            header::SET_COOKIE,
            format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"),
        )],
        Json(json!({"signed_out": true})),
    )
        .into_response()
}

async fn me(State(dash): State<Arc<Dashboard>>, Extension(login): Extension<Login>) -> Json<Value> {
    let mut view = login.view(dash.rt.config().api_keys.is_empty());
    view["shadow"] = Value::Bool(dash.rt.config().server.shadow);
    Json(view)
}

/// Query parameters, refusing any this endpoint does not know.
fn query(
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    known: &[&str],
) -> Result<HashMap<String, String>, ApiError> {
    let Query(query) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))?;
    if let Some(unknown) = query.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            unknown.clone(),
            format!(
                "unknown query parameter `{unknown}`; known: {}",
                known.join(", ")
            ),
        ));
    }
    Ok(query)
}

/// Sessions, newest first: `q` (text in id, principal, agent, profile, channel or
/// instruction), `state` (`live`: held in this server's memory, `past`, `all`), `pending`
/// (`true`: only those with held calls waiting).
async fn sessions(
    State(dash): State<Arc<Dashboard>>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q, &["q", "state", "pending"])?;
    let text = q
        .get("q")
        .map(|t| t.trim().to_lowercase())
        .unwrap_or_default();
    let state = q.get("state").map(String::as_str).unwrap_or("all");
    if !matches!(state, "all" | "live" | "past") {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "state",
            format!("unknown state `{state}`; use live, past or all"),
        ));
    }
    let pending_only = match q.get("pending").map(String::as_str) {
        None | Some("" | "false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "pending",
                format!("`pending` is true or false, not `{other}`"),
            ))
        }
    };
    let (sessions, pending) = blocking(&dash.rt, |rt| {
        Ok((
            rt.recent_sessions(SESSIONS_LISTED)?,
            rt.approvals(Some(ApprovalStatus::Pending))?,
        ))
    })
    .await?;
    let live: HashSet<String> = dash.rt.live_session_ids().into_iter().collect();
    let mut waiting: HashMap<&str, usize> = HashMap::new();
    for a in &pending {
        *waiting.entry(a.session.as_str()).or_default() += 1;
    }
    let rows: Vec<Value> = sessions
        .iter()
        .filter(|s| {
            let is_live = live.contains(&s.id);
            let state_ok = match state {
                "live" => is_live,
                "past" => !is_live,
                _ => true,
            };
            let text_ok = text.is_empty()
                || [
                    s.id.as_str(),
                    &s.principal,
                    &s.agent,
                    s.profile.as_deref().unwrap_or_default(),
                    &s.channel,
                    &s.instruction,
                ]
                .iter()
                .any(|f| f.to_lowercase().contains(&text));
            let pending_ok = !pending_only || waiting.contains_key(s.id.as_str());
            state_ok && text_ok && pending_ok
        })
        .map(|s| {
            json!({
                "id": s.id,
                "principal": s.principal,
                "agent": s.agent,
                "profile": s.profile,
                "channel": s.channel,
                "instruction": s.instruction,
                "opened_at_ms": s.opened_at_ms,
                "live": live.contains(&s.id),
                "pending": waiting.get(s.id.as_str()).copied().unwrap_or(0),
            })
        })
        .collect();
    Ok(Json(json!({ "sessions": rows })))
}

/// A result as the timeline shows it: text with obvious secrets redacted (as in the audit log),
/// cut to a readable length.
fn shown_result(result: &Value) -> Value {
    let text = match redact_secrets(result) {
        Value::String(s) => s,
        other => serde_json::to_string_pretty(&other).unwrap_or_default(),
    };
    let total = text.chars().count();
    if total <= RESULT_SHOWN {
        return Value::String(text);
    }
    let cut: String = text.chars().take(RESULT_SHOWN).collect();
    Value::String(format!("{cut}… ({} more characters)", total - RESULT_SHOWN))
}

/// A session's timeline: each step in order with, for calls, the decision's reasons and the
/// provenance of each argument (the steps its values came from) and the approval of a held
/// call; and the session's audit events (approvals, alerts).
async fn session(
    State(dash): State<Arc<Dashboard>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let view = blocking(&dash.rt, move |rt| {
        let stored = rt.stored_session(&id)?;
        let events = match rt.audit() {
            Some(log) => log
                .events(&EventFilter {
                    session: Some(id.clone()),
                    ..EventFilter::default()
                })
                .map_err(|e| {
                    crate::runtime::RuntimeError::Unavailable(format!("reading the audit log: {e}"))
                })?,
            None => Vec::new(),
        };
        let mut by_seq: HashMap<u64, &warden_audit::LoggedEvent> = HashMap::new();
        for e in &events {
            if let Some(seq) = e.event.body.get("seq").and_then(Value::as_u64) {
                if matches!(
                    e.event.kind,
                    EventKind::Decision | EventKind::Result | EventKind::Message
                ) {
                    by_seq.insert(seq, e);
                }
            }
        }
        let mut steps = Vec::new();
        for s in &stored.steps {
            let step: Step = match serde_json::from_str(&s.body) {
                Ok(step) => step,
                Err(e) => {
                    steps.push(json!({"seq": s.seq, "kind": s.kind, "error": e.to_string()}));
                    continue;
                }
            };
            let logged = by_seq.get(&s.seq);
            let mut item = json!({
                "seq": s.seq,
                "kind": s.kind,
                "time_ms": logged.map(|e| e.event.time_ms),
                "audit_index": logged.map(|e| e.index),
            });
            match step {
                Step::Call { call, verdict } => {
                    item["tool"] = json!(call.tool);
                    item["call_id"] = json!(call.call_id);
                    item["args"] = redact_secrets(&json!(call.args));
                    item["verdict"] = json!(verdict);
                    if let Some(e) = logged {
                        item["reasons"] = e.event.body.get("reasons").cloned().unwrap_or_default();
                        item["provenance"] =
                            e.event.body.get("provenance").cloned().unwrap_or_default();
                        item["shadow"] = e.event.body.get("shadow").cloned().unwrap_or_default();
                    }
                    if verdict == warden_model::Verdict::Hold {
                        if let Ok(mut a) = rt.approval(&format!("{}/{}", stored.session.id, s.seq))
                        {
                            a.args = redact_secrets(&a.args);
                            item["approval"] = json!(a);
                        }
                    }
                }
                Step::Result {
                    tool,
                    call_id,
                    integrity,
                    confidentiality,
                    result,
                    carried,
                    ..
                } => {
                    item["tool"] = json!(tool);
                    item["call_id"] = json!(call_id);
                    item["integrity"] = json!(integrity);
                    item["confidentiality"] = json!(confidentiality);
                    item["result"] = shown_result(&result);
                    if !carried.is_empty() {
                        // Values an earlier write carried out of untrusted content.
                        item["carried_from"] = carried
                            .iter()
                            .map(warden_model::CarriedLabel::origin)
                            .collect();
                    }
                }
                Step::UserMessage { text }
                | Step::SystemMessage { text }
                | Step::AgentReasoning { text } => {
                    item["text"] = redact_secrets(&Value::String(text))
                }
            }
            steps.push(item);
        }
        let audit: Vec<&warden_audit::LoggedEvent> = events
            .iter()
            .filter(|e| matches!(e.event.kind, EventKind::Approval | EventKind::Alert))
            .collect();
        Ok(json!({
            "session": stored.session,
            "live": rt.live_session_ids().contains(&stored.session.id),
            "steps": steps,
            "audit": audit,
        }))
    })
    .await?;
    Ok(Json(view))
}

async fn approvals(
    State(dash): State<Arc<Dashboard>>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q, &["status"])?;
    let status = crate::api::status_filter(q.get("status").map(String::as_str))?;
    let mut list = blocking(&dash.rt, move |rt| rt.approvals(status)).await?;
    for a in &mut list {
        a.args = redact_secrets(&a.args);
    }
    Ok(Json(json!({ "approvals": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    decision: Resolve,
    comment: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Resolve {
    Approve,
    Deny,
}

/// Approve or deny a held call, as the signed-in person (the audit log records their name).
async fn resolve(
    State(dash): State<Arc<Dashboard>>,
    Extension(login): Extension<Login>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ResolveBody>,
) -> Result<Json<Value>, ApiError> {
    if !login.role.may_decide_approvals() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "`{}` is signed in as a {}: only approvers and admins may approve or deny held \
                 calls",
                login.name,
                login.role.as_str()
            ),
        ));
    }
    let comment = body
        .comment
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    let approve = matches!(body.decision, Resolve::Approve);
    let approval = blocking(&dash.rt, move |rt| {
        rt.resolve_approval(&id, approve, &login.name, comment)
    })
    .await?;
    Ok(Json(json!(approval)))
}

/// The pinned tool definitions, each changed one with what changed.
async fn pins(State(dash): State<Arc<Dashboard>>) -> Result<Json<Value>, ApiError> {
    let pins = blocking(&dash.rt, |rt| rt.tool_pins()).await?;
    let list: Vec<Value> = pins
        .into_iter()
        .map(|p| {
            let change = p
                .seen
                .as_ref()
                .map(|s| crate::runtime::describe_change(&p.definition, &s.definition));
            let mut v = json!(p);
            v["change"] = json!(change);
            v
        })
        .collect();
    Ok(Json(json!({ "pins": list })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AcceptBody {
    upstream: String,
    tool: String,
}

/// An admin accepts the changed definition of a tool.
async fn accept_tool(
    State(dash): State<Arc<Dashboard>>,
    Extension(login): Extension<Login>,
    JsonBody(body): JsonBody<AcceptBody>,
) -> Result<Json<Value>, ApiError> {
    if login.role != Role::Admin {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "`{}` is signed in as a {}: only admins may accept a changed tool definition",
                login.name,
                login.role.as_str()
            ),
        ));
    }
    let pin = blocking(&dash.rt, move |rt| {
        rt.accept_tool(&body.upstream, &body.tool, &login.name)
    })
    .await?;
    Ok(Json(json!(pin)))
}

fn audit_unavailable(e: warden_audit::AuditError) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        format!("reading the audit log: {e}"),
    )
}

async fn alerts(State(dash): State<Arc<Dashboard>>) -> Result<Json<Value>, ApiError> {
    let Some(log) = dash.rt.audit().cloned() else {
        return Ok(Json(json!({ "alerts": [] })));
    };
    let events = tokio::task::spawn_blocking(move || {
        log.events(&EventFilter {
            kind: Some(EventKind::Alert),
            limit: ALERTS_LISTED,
            newest: true,
            ..EventFilter::default()
        })
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .map_err(audit_unavailable)?;
    let mut events = events;
    events.reverse();
    Ok(Json(json!({ "alerts": events })))
}

async fn audit_status(State(dash): State<Arc<Dashboard>>) -> Result<Json<Value>, ApiError> {
    let Some(log) = dash.rt.audit().cloned() else {
        return Ok(Json(json!({ "enabled": false })));
    };
    let view = tokio::task::spawn_blocking(move || {
        let reader = log.reader();
        let entries = reader.len()?;
        let checkpoint = reader
            .latest_checkpoint()?
            .map(|c| json!({"size": c.checkpoint.size, "time_ms": c.time_ms, "note": c.note}));
        Ok::<_, warden_audit::AuditError>(json!({
            "enabled": true,
            "entries": entries,
            "latest_checkpoint": checkpoint,
            "public_key": log.public_key(),
        }))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
    .map_err(audit_unavailable)?;
    Ok(Json(view))
}

/// Recompute the whole log and check its signed checkpoints (as `warden audit verify`). A POST:
/// it costs time proportional to the log.
async fn audit_verify(State(dash): State<Arc<Dashboard>>) -> Result<Json<Value>, ApiError> {
    let Some(log) = dash.rt.audit().cloned() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "this server keeps no audit log",
        ));
    };
    let started = now_ms();
    let report = tokio::task::spawn_blocking(move || log.verify(&VerifyOptions::default()))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
        .map_err(audit_unavailable)?;
    let problems: Vec<Value> = report
        .problems
        .iter()
        .map(|p| json!({"index": p.index, "kind": format!("{:?}", p.kind), "message": p.message}))
        .collect();
    Ok(Json(json!({
        "ok": report.ok(),
        "entries": report.entries,
        "checkpoints_checked": report.checkpoints_checked,
        "signed_size": report.signed_size,
        "message": report.message(),
        "problems": problems,
        "verified_at_ms": now_ms(),
        "took_ms": now_ms().saturating_sub(started),
    })))
}

/// The policy in force: its digest, each Cedar policy's text, the profiles and the operator's
/// word on tools.
async fn policy(State(dash): State<Arc<Dashboard>>) -> Json<Value> {
    let rt = &dash.rt;
    let policies: Vec<Value> = rt
        .engine()
        .texts()
        .map(|(id, text)| json!({"id": id, "text": text}))
        .collect();
    let config = rt.config();
    Json(json!({
        "digest": rt.engine().digest,
        "shadow": config.server.shadow,
        "policies": policies,
        "profiles": config.profiles,
        "tools": config.tools,
        "hold_timeout_secs": config.mcp.hold_timeout_secs,
        "alert_threshold": config.detect.alert_threshold,
    }))
}

impl Dashboard {
    /// Whether this sign-in still holds (not signed out, not expired).
    fn signed_in(&self, key: &str) -> bool {
        self.logins
            .lock()
            .ok()
            .and_then(|l| l.get(key).map(|l| l.expires_ms > now_ms()))
            .unwrap_or(false)
    }
}

/// Live changes as server-sent events: `hello` on connect, then `change` (`{kind, session,
/// seq?}`) as each becomes durable, and `resync` when this stream fell behind and should
/// re-read everything. The stream ends when the server stops or the sign-in ends.
async fn events(
    State(dash): State<Arc<Dashboard>>,
    Extension(login): Extension<Login>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = dash.rt.subscribe();
    let hello = stream::once(async { Ok(SseEvent::default().event("hello").data("{}")) });
    let changes = stream::unfold((rx, dash, login.key), |(mut rx, dash, key)| async move {
        loop {
            let next = tokio::select! {
                () = dash.shutdown.cancelled() => return None,
                () = dash.signed_out.notified() => None,
                next = rx.recv() => Some(next),
            };
            if !dash.signed_in(&key) {
                return None;
            }
            // Someone else signed out: this stream goes on.
            let Some(next) = next else { continue };
            let event = match next {
                Ok(change) => SseEvent::default()
                    .event("change")
                    .data(serde_json::to_string(&change).unwrap_or_default()),
                Err(RecvError::Lagged(missed)) => SseEvent::default()
                    .event("resync")
                    .data(json!({ "missed": missed }).to_string()),
                Err(RecvError::Closed) => return None,
            };
            return Some((Ok(event), (rx, dash, key)));
        }
    });
    Sse::new(hello.chain(changes)).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_told_from_others() {
        for host in [
            "localhost",
            "localhost:8787",
            "127.0.0.1:9",
            "[::1]:80",
            "127.1.2.3",
        ] {
            assert!(loopback_host(host), "{host}");
        }
        for host in [
            "",
            "evil.test",
            "evil.test:8787",
            "10.0.0.1:80",
            "localhost.evil.test",
        ] {
            assert!(!loopback_host(host), "{host}");
        }
    }

    #[test]
    fn the_sign_in_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; warden_ui=abc; b=2"),
        );
        assert_eq!(cookie_value(&headers).as_deref(), Some("abc"));
        headers.insert(header::COOKIE, HeaderValue::from_static("warden_uix=abc"));
        assert_eq!(cookie_value(&headers), None);
    }

    #[test]
    fn a_foreign_origin_or_site_is_refused_and_the_own_origin_passes() {
        let mut headers = HeaderMap::new();
        assert!(cross_origin(&headers, "127.0.0.1:8787").is_none());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8787"),
        );
        assert!(cross_origin(&headers, "127.0.0.1:8787").is_none());
        assert!(cross_origin(&headers, "127.0.0.1:9999").is_some());
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(cross_origin(&headers, "127.0.0.1:8787").is_some());
        headers.remove(header::ORIGIN);
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_origin(&headers, "127.0.0.1:8787").is_some());
    }
}
