//! The guard API (axum), for agent frameworks that run their own tools: open a session, decide a
//! call, observe a result, record the agent's own steps, read a session; and for people, list and
//! decide held calls (approvals). Handlers are thin: parse → runtime → JSON. Client mistakes are
//! 4xx with a JSON error naming the field.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use warden_model::{Call, Params};
use warden_policy::Step;
use warden_store::ApprovalStatus;

use crate::config::{ApiKey, Role};
use crate::dashboard::{cross_origin, loopback_host};
use crate::runtime::{sha256_hex, OpenRequest, Runtime, RuntimeError};

/// An error as the API returns it: `{"error": {"code", "message", "field"?}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    field: Option<String>,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            field: None,
            message: message.into(),
        }
    }
    pub(crate) fn field(
        status: StatusCode,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            code: "invalid_request",
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "message": self.message});
        if let Some(f) = self.field {
            body["field"] = Value::String(f);
        }
        (self.status, Json(json!({ "error": body }))).into_response()
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::BadRequest { field, message } => {
                ApiError::field(StatusCode::BAD_REQUEST, field, message)
            }
            RuntimeError::Unauthorized(m) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m)
            }
            RuntimeError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m),
            RuntimeError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m),
            RuntimeError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            RuntimeError::Store(e) => {
                tracing::error!(error = %e, "session store failed");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    e.to_string(),
                )
            }
            RuntimeError::Unavailable(m) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
            }
            RuntimeError::Internal(m) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("internal error: {m}"),
            ),
        }
    }
}

/// Run a runtime call off the async workers: it waits on SQLite and the audit log's group commit.
pub(crate) async fn blocking<T: Send + 'static>(
    rt: &Arc<Runtime>,
    f: impl FnOnce(&Runtime) -> Result<T, RuntimeError> + Send + 'static,
) -> Result<T, ApiError> {
    let rt = rt.clone();
    tokio::task::spawn_blocking(move || f(&rt))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the runtime task failed: {e}"),
            )
        })?
        .map_err(ApiError::from)
}

/// A JSON body parsed with errors that name the offending field, and a size limit that answers
/// with a JSON 413.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            let status = e.status();
            ApiError::new(
                status,
                "body_rejected",
                format!("request body: {}", e.body_text()),
            )
        })?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de)
            .map(JsonBody)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                let field = if path == "." { String::new() } else { path };
                let message = if inner.is_syntax() || inner.is_eof() {
                    format!("request body is not valid JSON: {inner}")
                } else {
                    inner.to_string()
                };
                if inner.is_syntax() || inner.is_eof() {
                    // Where the parser stopped is not a field the client got wrong.
                    return ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", message);
                }
                let mut err = ApiError::field(StatusCode::BAD_REQUEST, field.clone(), message);
                if field.is_empty() {
                    // A missing field is reported at the top level; name it from serde's message.
                    err.field = missing_field(&err.message);
                }
                err
            })
    }
}

fn missing_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next().map(str::to_owned)
}

/// Who is calling, as the authentication layer found it.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A configured API key, by name.
    Key(String),
    /// A bearer token that is not an API key: a session token, checked against the session.
    Token(String),
    /// No `Authorization` header.
    Anonymous,
}

async fn authenticate(State(rt): State<Arc<Runtime>>, mut req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let caller = match header {
        None => Caller::Anonymous,
        Some(h) => match h.strip_prefix("Bearer ") {
            None => {
                return ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "the Authorization header must be `Bearer <API key or session token>`",
                )
                .into_response()
            }
            Some(token) => {
                let hash = sha256_hex(token.trim());
                match rt
                    .config()
                    .api_keys
                    .iter()
                    .find(|k| k.sha256.eq_ignore_ascii_case(&hash))
                {
                    Some(k) => Caller::Key(k.name.clone()),
                    None => Caller::Token(token.trim().to_owned()),
                }
            }
        },
    };
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The API key a person decides approvals with, as `require_approver` found it.
#[derive(Debug, Clone)]
struct ApproverKey(String);

/// The session whose token asks about one of its own held calls.
#[derive(Debug, Clone)]
struct OwnSession(String);

/// Approvals are for people: an API key whose role is `approver` or `admin`. An agent may only
/// read the approval of a call of its own session (to learn whether it may go ahead), with that
/// session's token.
async fn require_approver(
    State(rt): State<Arc<Runtime>>,
    mut req: Request,
    next: Next,
) -> Response {
    let caller = req.extensions().get::<Caller>().cloned();
    let refusal = match caller {
        Some(Caller::Key(name)) => {
            let role = rt
                .config()
                .api_keys
                .iter()
                .find(|k| k.name == name)
                .map(|k| k.role)
                .unwrap_or_default();
            if role.may_decide_approvals() {
                req.extensions_mut().insert(ApproverKey(name));
                return next.run(req).await;
            }
            ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "API key `{name}` has role `{}`; approvals need a key with role `approver` \
                     or `admin` (set `role` in its [[api_keys]] entry)",
                    role.as_str()
                ),
            )
        }
        Some(Caller::Token(token))
            if req.method() == axum::http::Method::GET && req.uri().path() != "/v1/approvals" =>
        {
            match blocking(&rt, move |rt| rt.session_for_token(&token)).await {
                Ok(session) => {
                    req.extensions_mut().insert(OwnSession(session));
                    return next.run(req).await;
                }
                Err(e) => e,
            }
        }
        Some(Caller::Token(_)) => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a session token can only read the approvals of its own session's calls \
             (GET /v1/approvals/{id}); listing and deciding them needs an API key with role \
             `approver` or `admin`",
        ),
        Some(Caller::Anonymous) | None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "approvals need `Authorization: Bearer <API key>` with a key whose role is `approver` \
             or `admin`",
        ),
    };
    refusal.into_response()
}

/// What a web page may not do through a visitor's browser, by the dashboard's rules: with no
/// `[[api_keys]]` (loopback only, no credentials) only a loopback `Host` is answered, so a page
/// cannot reach the API by DNS rebinding; and no state-changing request a browser sent from
/// another origin (a page's simple `text/plain` POST) is served. Agents send no `Origin`.
async fn refuse_web_pages(State(rt): State<Arc<Runtime>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let refusal = if rt.config().api_keys.is_empty() && !loopback_host(host) {
        Some(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "no [[api_keys]] are configured, so the guard API answers only on a loopback \
                 name (localhost, 127.0.0.1); this request was for host `{host}`"
            ),
        ))
    } else if !matches!(*req.method(), Method::GET | Method::HEAD) {
        cross_origin(req.headers(), host)
    } else {
        None
    };
    match refusal {
        Some(refusal) => refusal.into_response(),
        None => next.run(req).await,
    }
}

/// The guard API's routes, with authentication and the body limit as layers.
pub fn router(rt: Arc<Runtime>) -> Router {
    router_with(rt, tokio_util::sync::CancellationToken::new())
}

/// The guard API's routes, and the MCP front at `/mcp` when the config declares upstreams
/// (`mcp_shutdown` ends its open streams).
pub fn router_with(rt: Arc<Runtime>, mcp_shutdown: tokio_util::sync::CancellationToken) -> Router {
    let mcp = if rt.config().upstreams.is_empty() {
        Router::new()
    } else {
        crate::mcp_http::router(rt.clone(), mcp_shutdown.clone())
    };
    // The dashboard (`/ui/`) signs people in with its own cookie; the guard API's bearer
    // authentication does not apply to it.
    let dashboard = crate::dashboard::router(rt.clone(), mcp_shutdown);
    let limit = rt.config().server.max_body_bytes;
    // A decision id holds a `/` (`<session>/<seq>`): the id is the rest of the path.
    let approvals = Router::new()
        .route("/v1/approvals", get(list_approvals))
        .route(
            "/v1/approvals/{*id}",
            get(get_approval).post(resolve_approval),
        )
        .route_layer(middleware::from_fn_with_state(rt.clone(), require_approver));
    // `/mcp` checks `Host` and `Origin` itself (`[mcp] allowed_hosts`).
    let guard = Router::new()
        .merge(approvals)
        .route("/v1/sessions", post(open_session))
        .route("/v1/sessions/{id}", get(get_session))
        .route("/v1/decide", post(decide))
        .route("/v1/observe", post(observe))
        .route("/v1/events", post(event))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route_layer(middleware::from_fn_with_state(rt.clone(), refuse_web_pages))
        .layer(middleware::from_fn(json_errors));
    Router::new()
        .merge(guard)
        .merge(mcp)
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; see the README for the guard API",
            )
        })
        .layer(middleware::from_fn_with_state(rt.clone(), authenticate))
        .layer(DefaultBodyLimit::max(limit))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(rt.clone())
        .merge(dashboard)
        // Last line of defence: a handler that panics answers its own request with a JSON 500
        // and the connection and every other request go on.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |panic: Box<dyn std::any::Any + Send>| {
                let message = crate::runtime::panic_message(panic.as_ref());
                tracing::error!(%message, "a request handler panicked");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("internal error while handling this request: {message}"),
                )
                .into_response()
            },
        ))
        .layer(middleware::from_fn_with_state(rt, body_in_time))
}

/// Client mistakes that axum answers itself (a method the route does not take, a path id that
/// is not UTF-8, a query that does not parse) become the API's JSON errors like every other:
/// `{"error": {"code", "message"}}` with the same status (and headers, such as `Allow`).
pub(crate) async fn json_errors(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if !status.is_client_error() || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let takes = if allowed.is_empty() {
                "see the README for the guard API's methods".to_owned()
            } else {
                format!("this path takes {allowed}")
            };
            (
                "method_not_allowed",
                format!("`{path}` does not take {method}: {takes}"),
            )
        }
        StatusCode::NOT_FOUND => ("not_found", text),
        StatusCode::PAYLOAD_TOO_LARGE => ("body_rejected", text),
        _ => ("invalid_request", text),
    };
    let message = if message.is_empty() {
        format!("{status}")
    } else {
        message
    };
    let mut answer = ApiError::new(status, code, message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            answer.headers_mut().insert(name, value.clone());
        }
    }
    answer
}

/// Every request's body arrives whole within `server.body_timeout_secs` of its head, or the
/// request is answered 408 (a client trickling a body holds no connection for long). Bodies are
/// read here, within the size limit, and handed on whole.
async fn body_in_time(State(rt): State<Arc<Runtime>>, req: Request, next: Next) -> Response {
    let server = &rt.config().server;
    let deadline = std::time::Duration::from_secs(server.body_timeout_secs);
    // The dashboard's own limit is smaller; the extractors behind check their limits again.
    let limit = server.max_body_bytes.max(64 * 1024);
    let (parts, body) = req.into_parts();
    let read = tokio::time::timeout(deadline, axum::body::to_bytes(body, limit)).await;
    let bytes = match read {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            let (status, message) = if too_large {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body: larger than {limit} bytes (server.max_body_bytes)"),
                )
            } else {
                (StatusCode::BAD_REQUEST, format!("request body: {e}"))
            };
            return ApiError::new(status, "body_rejected", message).into_response();
        }
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive within {} s (server.body_timeout_secs)",
                    deadline.as_secs()
                ),
            )
            .into_response()
        }
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

/// Why a person's key (`viewer`, `approver`, `admin`) opens no agent session: a session acts for
/// an agent, and a key that can also approve its held calls would let one credential do both.
pub(crate) fn people_key(key: &ApiKey) -> String {
    format!(
        "API key `{}` is a person's key (role `{}`): it signs in to the dashboard and decides \
         approvals, but opens no agent sessions. Give the agent its own key (role `agent`, the \
         default) from `warden keys new`",
        key.name,
        key.role.as_str()
    )
}

fn session_caller(rt: &Runtime, caller: &Caller, session: &str) -> Result<(), ApiError> {
    match caller {
        Caller::Token(t) => Ok(rt.authenticate(session, t)?),
        Caller::Key(_) | Caller::Anonymous => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this endpoint needs `Authorization: Bearer <session token>` (the token returned by POST /v1/sessions)",
        )),
    }
}

/// The agent id of a session opened without one on a config without API keys.
pub const DEFAULT_AGENT: &str = "agent";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenBody {
    principal: String,
    agent: Option<String>,
    profile: Option<String>,
    #[serde(default)]
    task: Params,
    #[serde(default)]
    instruction: String,
    channel: Option<String>,
}

async fn open_session(
    State(rt): State<Arc<Runtime>>,
    axum::Extension(caller): axum::Extension<Caller>,
    JsonBody(body): JsonBody<OpenBody>,
) -> Result<Response, ApiError> {
    let key = match &caller {
        Caller::Key(name) => rt
            .config()
            .api_keys
            .iter()
            .find(|k| &k.name == name)
            .cloned(),
        Caller::Anonymous if rt.config().api_keys.is_empty() => None,
        _ => return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "opening a session needs `Authorization: Bearer <API key>` with a key from the config",
        )),
    };
    // The agent's id defaults to the API key's name, or to `agent` when the config has no keys.
    let agent = body
        .agent
        .or_else(|| key.as_ref().map(|k| k.name.clone()))
        .unwrap_or_else(|| DEFAULT_AGENT.to_owned());
    for (field, value) in [("principal", &body.principal), ("agent", &agent)] {
        if value.trim().is_empty() {
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                field,
                format!("`{field}` must not be empty"),
            ));
        }
    }
    if let Some(k) = &key {
        if k.role != Role::Agent {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                people_key(k),
            ));
        }
        if !k.allows_agent(&agent) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("API key `{}` may not act as agent `{agent}`", k.name),
            ));
        }
        if !k.allows_principal(&body.principal) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "API key `{}` may not open sessions for principal `{}`",
                    k.name, body.principal
                ),
            ));
        }
        if !k.allows_profile(body.profile.as_deref()) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "API key `{}` may not open sessions with task profile `{}`",
                    k.name,
                    body.profile.as_deref().unwrap_or("(none)")
                ),
            ));
        }
    }
    let request = OpenRequest {
        principal: body.principal,
        agent,
        profile: body.profile,
        task: body.task,
        instruction: body.instruction,
        channel: body.channel.unwrap_or_else(|| "api".into()),
    };
    let (session, token) = blocking(&rt, move |rt| rt.open_session(request)).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": session.id, "token": token, "session": session})),
    )
        .into_response())
}

async fn get_session(
    State(rt): State<Arc<Runtime>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    session_caller(&rt, &caller, &id)?;
    Ok(Json(rt.session_view(&id)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    session: String,
    tool: String,
    #[serde(default)]
    args: Params,
    #[serde(default)]
    call_id: Option<String>,
}

async fn decide(
    State(rt): State<Arc<Runtime>>,
    axum::Extension(caller): axum::Extension<Caller>,
    headers: axum::http::HeaderMap,
    JsonBody(body): JsonBody<DecideBody>,
) -> Result<Json<Value>, ApiError> {
    session_caller(&rt, &caller, &body.session)?;
    if body.tool.trim().is_empty() {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            "tool",
            "`tool` must not be empty",
        ));
    }
    let call = Call {
        tool: body.tool,
        args: body.args,
        call_id: body.call_id.unwrap_or_default(),
        upstream: None,
    };
    // The agent's W3C trace context, so the call's span joins its trace.
    let trace = crate::telemetry::CallTrace {
        traceparent: headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        mcp_method: None,
    };
    let record = blocking(&rt, move |rt| rt.decide_traced(&body.session, call, &trace)).await?;
    let value = serde_json::to_value(&record)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    Ok(Json(value))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ObserveBody {
    session: String,
    call_id: String,
    tool: Option<String>,
    result: Value,
}

async fn observe(
    State(rt): State<Arc<Runtime>>,
    axum::Extension(caller): axum::Extension<Caller>,
    JsonBody(body): JsonBody<ObserveBody>,
) -> Result<Json<Value>, ApiError> {
    session_caller(&rt, &caller, &body.session)?;
    let (seq, label) = blocking(&rt, move |rt| {
        rt.observe(
            &body.session,
            &body.call_id,
            body.tool.as_deref(),
            None,
            body.result,
        )
    })
    .await?;
    Ok(Json(json!({"seq": seq, "label": label})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventBody {
    session: String,
    kind: EventKind,
    text: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum EventKind {
    UserMessage,
    SystemMessage,
    AgentReasoning,
}

async fn event(
    State(rt): State<Arc<Runtime>>,
    axum::Extension(caller): axum::Extension<Caller>,
    JsonBody(body): JsonBody<EventBody>,
) -> Result<Json<Value>, ApiError> {
    session_caller(&rt, &caller, &body.session)?;
    let step = match body.kind {
        EventKind::UserMessage => Step::UserMessage { text: body.text },
        EventKind::SystemMessage => Step::SystemMessage { text: body.text },
        EventKind::AgentReasoning => Step::AgentReasoning { text: body.text },
    };
    let seq = blocking(&rt, move |rt| rt.event(&body.session, step)).await?;
    Ok(Json(json!({ "seq": seq })))
}

async fn list_approvals(
    State(rt): State<Arc<Runtime>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()))?;
    if let Some(unknown) = query.keys().find(|k| k.as_str() != "status") {
        return Err(ApiError::field(
            StatusCode::BAD_REQUEST,
            unknown.clone(),
            format!("unknown query parameter `{unknown}`; the only one is `status`"),
        ));
    }
    let status = status_filter(query.get("status").map(String::as_str))?;
    Ok(Json(json!({ "approvals": rt.approvals(status)? })))
}

/// The `status` query parameter of an approvals list: pending unless it says otherwise; `all`
/// for every status.
pub(crate) fn status_filter(status: Option<&str>) -> Result<Option<ApprovalStatus>, ApiError> {
    match status {
        None | Some("pending") => Ok(Some(ApprovalStatus::Pending)),
        Some("all") => Ok(None),
        Some(s) => ApprovalStatus::parse(s).map(Some).ok_or_else(|| {
            ApiError::field(
                StatusCode::BAD_REQUEST,
                "status",
                format!("unknown status `{s}`; use pending, approved, denied, expired or all"),
            )
        }),
    }
}

async fn get_approval(
    State(rt): State<Arc<Runtime>>,
    own: Option<axum::Extension<OwnSession>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let approval = rt.approval(&id)?;
    if let Some(axum::Extension(OwnSession(session))) = own {
        if approval.session != session {
            // Another session's approval does not exist, as far as this token can tell.
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no approval `{id}` in session `{session}`"),
            ));
        }
    }
    Ok(Json(json!(approval)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    decision: Resolve,
    approver: Option<String>,
    comment: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Resolve {
    Approve,
    Deny,
}

async fn resolve_approval(
    State(rt): State<Arc<Runtime>>,
    axum::Extension(ApproverKey(key)): axum::Extension<ApproverKey>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ResolveBody>,
) -> Result<Json<Value>, ApiError> {
    // The key is who is accountable; a name in the body says which person used it.
    let approver = match body.approver {
        None => key,
        Some(name) if name.trim().is_empty() => {
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "approver",
                "`approver` must not be empty; leave it out to record the API key's name",
            ))
        }
        Some(name) => format!("{} (key {key})", name.trim()),
    };
    let comment = body.comment.filter(|c| !c.trim().is_empty());
    let approve = matches!(body.decision, Resolve::Approve);
    let approval = rt.resolve_approval(&id, approve, &approver, comment)?;
    Ok(Json(json!(approval)))
}
