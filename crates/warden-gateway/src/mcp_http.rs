//! The streamable HTTP front of `warden serve`: MCP at `/mcp`, on the guard API's listener, in
//! front of the MCP servers the config declares as `[[upstreams]]`.
//!
//! - `tools/list` (and `prompts/list`) merges every upstream's tools (prompts), each named
//!   `<upstream>__<name>`; resources keep their URIs and are read from the upstream that listed
//!   them. `tools/call` and `prompts/get` route by the prefix. Warden decides on the upstream's
//!   own tool name (so policies and `[tools.<name>]` entries keyed by tool name keep working),
//!   and knows a tool by its upstream and its name.
//! - Each MCP session (`Mcp-Session-Id`, protocol 2025-11-25 and earlier) is one Warden session,
//!   bound on `initialize`: to the session whose token the request carries (`Authorization:
//!   Bearer <token>` from `POST /v1/sessions`; `Warden-Session: <id>` may name it too), else a
//!   new one opened from the API key (principal and agent = the key's name, no profile).
//!   Every later request must carry the same `Authorization` as the `initialize`.
//! - Requests without `initialize` (the 2026-07-28 stateless era, which rmcp routes itself) are
//!   served only when bound to a session by its token; anything else is refused.
//! - Upstreams are child processes shared by all sessions, started on first use and started again
//!   on the next use after they exit; a dead upstream makes only its own calls fail (`isError`).
//!   A start runs on its own task, shared by whoever waits for it, under no lock; every request
//!   upstream has a deadline (`timeout_secs`; merged lists wait at most `LIST_WAIT` per server and
//!   are answered without one that is late, logged by name), so a stuck server delays only its
//!   own tools.
//!
//! The decision, the wait for a person and the observation of results are `mcp::Guard`'s, the
//! same code the stdio wrapper runs.

// Logging and resources/subscribe are deprecated in the 2026-07-28 era, but clients of the
// 2025-11-25 era still send them; in front of one server Warden forwards them.
#![allow(deprecated)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, ClientCapabilities, ClientConfig,
    ClientRequest, CompleteRequest, CompleteRequestParams, CompleteResult, ErrorData,
    GetPromptRequest, GetPromptRequestParams, GetPromptResponse, Implementation,
    InitializeRequestParams, InitializeResult, ListPromptsRequest, ListPromptsResult,
    ListResourceTemplatesRequest, ListResourceTemplatesResult, ListResourcesRequest,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, ProtocolVersion,
    ReadResourceRequest, ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities,
    ServerResult, SetLevelRequest, SetLevelRequestParams, SubscribeRequest, SubscribeRequestParams,
    UnsubscribeRequest, UnsubscribeRequestParams,
};
use rmcp::service::{Peer, RequestContext, RoleClient, RoleServer};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ServerHandler, ServiceError};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::api::Caller;
use crate::config::{UpstreamConfig, TOOL_SEPARATOR};
use crate::mcp::{self, Era, Forwarded, Guard, Link, UpstreamClient, UpstreamService};
use crate::outbound::{self, Credential, UpstreamHttp};
use crate::runtime::{sha256_hex, OpenRequest, Runtime, RuntimeError};

/// The path the front is served at.
pub const PATH: &str = "/mcp";
/// The header that names the Warden session a session token belongs to.
pub const SESSION_HEADER: &str = "warden-session";
/// How long an upstream that let a call time out has to answer a ping.
const PING_WAIT: Duration = Duration::from_secs(5);
/// How long an upstream may take to start and answer `initialize`.
const UPSTREAM_START: Duration = Duration::from_secs(30);
/// The longest a merged list (`tools/list` in front of several servers) waits for one server
/// (its `timeout_secs` if shorter): past it, the list is answered without that server's items.
const LIST_WAIT: Duration = Duration::from_secs(10);
/// How long an idle MCP session is kept: an expired one answers 404, and the client's new
/// session is a new Warden session unless it is bound by a session token.
const SESSION_KEEP_ALIVE: Duration = Duration::from_secs(30 * 60);

/// The `/mcp` route, with its own authentication check (behind the guard API's `authenticate`
/// layer, which names the caller). `shutdown` ends its open streams when the server stops.
pub fn router<S: Clone + Send + Sync + 'static>(
    rt: Arc<Runtime>,
    shutdown: CancellationToken,
) -> Router<S> {
    let upstreams = Arc::new(Upstreams::new(&rt.config().upstreams));
    let config = rt.config();
    let mut http = StreamableHttpServerConfig::default()
        .with_max_request_body_bytes(config.server.max_body_bytes)
        .with_cancellation_token(shutdown);
    if !config.mcp.allowed_hosts.is_empty() {
        http = http.with_allowed_hosts(config.mcp.allowed_hosts.clone());
    } else if !config.server.listen.ip().is_loopback() {
        // Off loopback, API keys are required (`Config::validate`), which DNS rebinding
        // cannot supply.
        http = http.disable_allowed_hosts();
    }
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(SESSION_KEEP_ALIVE);
    tracing::info!(
        "warden mcp: MCP (streamable HTTP) at {PATH} in front of {}",
        config
            .upstreams
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let front_rt = rt.clone();
    let service = StreamableHttpService::new(
        move || {
            Ok(Front {
                rt: front_rt.clone(),
                upstreams: upstreams.clone(),
                bound: tokio::sync::OnceCell::new(),
            })
        },
        Arc::new(sessions),
        http,
    );
    Router::new()
        .route_service(PATH, service)
        .route_layer(middleware::from_fn_with_state(rt, require_caller))
}

/// With API keys configured, `/mcp` needs one (or a session token), as the guard API does.
async fn require_caller(State(rt): State<Arc<Runtime>>, req: Request, next: Next) -> Response {
    let anonymous = matches!(
        req.extensions().get::<Caller>(),
        Some(Caller::Anonymous) | None
    );
    if anonymous && !rt.config().api_keys.is_empty() {
        let body = json!({"error": {
            "code": "unauthorized",
            "message": "/mcp needs `Authorization: Bearer <API key>`, or a session token from \
                        POST /v1/sessions",
        }});
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    let delete = req.method() == axum::http::Method::DELETE;
    let mut response = next.run(req).await;
    // rmcp answers a session's end with 202; the reference SDKs answer 200, and their
    // clients warn about anything but 200, 204 or 405.
    if delete && response.status() == StatusCode::ACCEPTED {
        *response.status_mut() = StatusCode::OK;
    }
    response
}

/// The upstreams by name, shared by every MCP session.
struct Upstreams {
    slots: BTreeMap<String, Slot>,
    /// Which upstream listed each resource URI (several upstreams: reads are routed by it).
    resources: std::sync::Mutex<BTreeMap<String, String>>,
    /// Each tool as last listed, by the name the front gives it: its input schema says which
    /// arguments a 2026-07-28 client mirrors in `Mcp-Param-*` headers (SEP-2243), which rmcp
    /// checks against the body before the request reaches Warden.
    tools: std::sync::Mutex<BTreeMap<String, rmcp::model::Tool>>,
    /// Zero configuration: the session of each client that makes stateless requests without a
    /// session token, by the name it gives (see `Front::bind`).
    implicit: std::sync::Mutex<BTreeMap<String, String>>,
}

/// One upstream: how to start it, and where its connections stand: one for the clients of
/// each era (`Era`), each started on first use. A server that does not speak the stateless era
/// serves its clients through the handshake connection.
struct Slot {
    config: UpstreamConfig,
    /// A remote upstream's HTTP client: its TLS roots and its own credential (the OAuth token
    /// cache outlives a reconnect). An error says why it cannot be reached at all.
    http: Option<Result<UpstreamHttp, String>>,
    handshake: Arc<std::sync::Mutex<SlotState>>,
    stateless: Arc<std::sync::Mutex<SlotState>>,
    /// The server answered `server/discover` as a handshake-era server does.
    handshake_only: Arc<std::sync::atomic::AtomicBool>,
}

/// A start in progress, shared by everyone who waits for it (it runs on its own task, so it
/// finishes, and is bounded by `UPSTREAM_START`, however many of them give up).
type Starting = Shared<BoxFuture<'static, Result<Arc<Connection>, mcp::ConnectError>>>;

enum SlotState {
    Down,
    Starting(Starting),
    Up(Arc<Connection>),
}

/// A started upstream. Dropping it stops the child process.
struct Connection {
    service: UpstreamService,
    link: Arc<Link>,
    /// The child process of a `command` upstream (killed when dropped).
    _child: Option<tokio::process::Child>,
}

impl Connection {
    fn peer(&self) -> &Peer<RoleClient> {
        self.service.peer()
    }
}

impl Upstreams {
    fn new(configs: &[UpstreamConfig]) -> Upstreams {
        let slots = configs
            .iter()
            .map(|c| {
                let http = c.url.as_ref().map(|_| {
                    let client = outbound::client(c.ca_file.as_deref())?;
                    let credential = Credential::of(c, &client)?;
                    Ok(UpstreamHttp::new(client, Arc::new(credential)))
                });
                let down = || Arc::new(std::sync::Mutex::new(SlotState::Down));
                let slot = Slot {
                    config: c.clone(),
                    http,
                    handshake: down(),
                    stateless: down(),
                    handshake_only: Default::default(),
                };
                (c.name.clone(), slot)
            })
            .collect();
        Upstreams {
            slots,
            resources: std::sync::Mutex::new(BTreeMap::new()),
            tools: std::sync::Mutex::new(BTreeMap::new()),
            implicit: std::sync::Mutex::new(BTreeMap::new()),
        }
    }
}

impl Slot {
    fn name(&self) -> &str {
        &self.config.name
    }

    /// How long one request to this upstream may take (`timeout_secs`).
    fn deadline(&self) -> Duration {
        Duration::from_secs(self.config.timeout_secs)
    }

    /// How long listing this upstream's tools (prompts, resources) may take before a merged
    /// list is answered without it.
    fn list_deadline(&self) -> Duration {
        self.deadline().min(LIST_WAIT)
    }

    /// Where the connection for `era`'s clients stands.
    fn state_of(&self, era: Era) -> &Arc<std::sync::Mutex<SlotState>> {
        match era {
            Era::Handshake => &self.handshake,
            Era::Stateless => &self.stateless,
        }
    }

    fn state(&self, era: Era) -> std::sync::MutexGuard<'_, SlotState> {
        // The state is replaced whole, never left half-written: a poisoned lock is still sound.
        self.state_of(era).lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The era of connection that serves a client of `era`.
    fn serving(&self, era: Era) -> Era {
        if self
            .handshake_only
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            Era::Handshake
        } else {
            era
        }
    }

    /// The running upstream for clients of `era`: started on first use, and again if it has
    /// exited since. No lock is held while it starts: callers wait on the shared start, each as
    /// long as it likes.
    async fn connection(&self, era: Era) -> Result<Arc<Connection>, String> {
        let era = self.serving(era);
        let starting = {
            let mut state = self.state(era);
            match &*state {
                SlotState::Up(c) if !c.peer().is_transport_closed() => return Ok(c.clone()),
                SlotState::Starting(started) => started.clone(),
                up_or_down => {
                    if matches!(up_or_down, SlotState::Up(_)) {
                        tracing::warn!(
                            upstream = self.name(),
                            "warden mcp: upstream exited; starting it again"
                        );
                    }
                    let started = self.start(era);
                    *state = SlotState::Starting(started.clone());
                    started
                }
            }
        };
        match starting.await {
            Ok(c) => Ok(c),
            Err(e) if e.handshake_only && era == Era::Stateless => {
                tracing::info!(
                    upstream = self.name(),
                    "warden mcp: the upstream does not speak the stateless era (2026-07-28); \
                     its clients of that era are served through its handshake connection"
                );
                self.handshake_only
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                Box::pin(self.connection(Era::Handshake)).await
            }
            Err(e) => Err(e.text),
        }
    }

    /// Start the upstream on a task of its own; when it is up (or failed), the slot says so.
    fn start(&self, era: Era) -> Starting {
        let config = self.config.clone();
        let http = self.http.clone();
        let state = self.state_of(era).clone();
        let task = tokio::spawn(async move {
            let started = tokio::time::timeout(UPSTREAM_START, start(&config, http, era));
            let started = match started.await {
                Ok(started) => started.map(Arc::new),
                Err(_) => Err(format!(
                    "it did not answer `initialize` within {} s",
                    UPSTREAM_START.as_secs()
                )
                .into()),
            };
            let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
            *state = match &started {
                Ok(c) => SlotState::Up(c.clone()),
                Err(_) => SlotState::Down,
            };
            started
        });
        async move {
            task.await
                .unwrap_or_else(|e| Err(format!("starting it failed: {e}").into()))
        }
        .boxed()
        .shared()
    }

    /// What the running upstream said it can do (`None` when it is not running).
    fn capabilities(&self) -> Option<ServerCapabilities> {
        [Era::Handshake, Era::Stateless]
            .into_iter()
            .find_map(|era| match &*self.state(era) {
                SlotState::Up(c) => c.peer().peer_info().map(|i| i.capabilities.clone()),
                _ => None,
            })
    }

    /// Forget this connection if it is still one of the slot's own (stopping a child process).
    fn discard(&self, connection: &Arc<Connection>) {
        for era in [Era::Handshake, Era::Stateless] {
            let mut state = self.state(era);
            if matches!(&*state, SlotState::Up(c) if Arc::ptr_eq(c, connection)) {
                *state = SlotState::Down;
            }
        }
    }
}

/// Start an upstream and connect to it in `era` (for the stateless era, a server that does not
/// speak it is an error that says so: `ConnectError::handshake_only`).
async fn start(
    config: &UpstreamConfig,
    http: Option<Result<UpstreamHttp, String>>,
    era: Era,
) -> Result<Connection, mcp::ConnectError> {
    let link = Arc::new(Link::default());
    let client = UpstreamClient {
        link: link.clone(),
        info: ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("warden", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE),
    };
    let ((service, initialize), child) = match &config.url {
        Some(url) => {
            let http = http.unwrap_or_else(|| Err("it has no HTTP client".into()))?;
            (
                mcp::connect_upstream(client, remote(config, url, http)?, era, false).await?,
                None,
            )
        }
        None => {
            let (program, args) = config
                .command
                .split_first()
                .ok_or_else(|| "its `command` is empty".to_owned())?;
            let (transport, child) = mcp::spawn_server(program, args, &config.env, &link)?;
            (
                mcp::connect_upstream(client, transport, era, false).await?,
                Some(child),
            )
        }
    };
    tracing::info!(
        upstream = config.name,
        server = %initialize.server_info.name,
        protocol = %initialize.protocol_version,
        "warden mcp: upstream started"
    );
    Ok(Connection {
        service,
        link,
        _child: child,
    })
}

/// A streamable HTTP client for the upstream's `url`, sending its `headers` and its own
/// credential.
fn remote(
    config: &UpstreamConfig,
    url: &str,
    http: UpstreamHttp,
) -> Result<StreamableHttpClientTransport<UpstreamHttp>, String> {
    let mut headers = std::collections::HashMap::new();
    for (name, value) in &config.headers {
        let name = header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| format!("header `{name}`: {e}"))?;
        let value =
            header::HeaderValue::from_str(value).map_err(|e| format!("header `{name}`: {e}"))?;
        headers.insert(name, value);
    }
    let transport =
        StreamableHttpClientTransportConfig::with_uri(url.to_owned()).custom_headers(headers);
    Ok(StreamableHttpClientTransport::with_client(http, transport))
}

/// One MCP session (or, without `initialize`, one request) as the front serves it.
pub struct Front {
    rt: Arc<Runtime>,
    upstreams: Arc<Upstreams>,
    bound: tokio::sync::OnceCell<Binding>,
}

/// The Warden session an MCP session is bound to, and who bound it.
struct Binding {
    guard: Guard,
    /// SHA-256 of the `Authorization` header that bound it (`""` for none).
    caller: String,
}

/// What a request says about who sends it.
struct Credentials {
    caller: Caller,
    /// SHA-256 of its `Authorization` header (`""` for none).
    fingerprint: String,
    /// The `Warden-Session` header.
    session: Option<String>,
}

fn credentials(ctx: &RequestContext<RoleServer>) -> Result<Credentials, ErrorData> {
    // Fail closed: a request that did not come through the HTTP layer names no one.
    let parts = ctx
        .extensions
        .get::<axum::http::request::Parts>()
        .ok_or_else(|| ErrorData::internal_error("the request carries no HTTP headers", None))?;
    let caller = parts
        .extensions
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| ErrorData::internal_error("the request was not authenticated", None))?;
    let fingerprint = parts
        .headers
        .get(header::AUTHORIZATION)
        .map(|v| sha256_hex(&String::from_utf8_lossy(v.as_bytes())))
        .unwrap_or_default();
    let session = parts
        .headers
        .get(SESSION_HEADER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
        .filter(|s| !s.is_empty());
    Ok(Credentials {
        caller,
        fingerprint,
        session,
    })
}

fn runtime_error(e: RuntimeError) -> ErrorData {
    match e {
        RuntimeError::BadRequest { .. }
        | RuntimeError::Unauthorized(_)
        | RuntimeError::Forbidden(_)
        | RuntimeError::NotFound(_)
        | RuntimeError::Conflict(_) => ErrorData::invalid_request(e.to_string(), None),
        RuntimeError::Store(_) | RuntimeError::Unavailable(_) | RuntimeError::Internal(_) => {
            ErrorData::internal_error(e.to_string(), None)
        }
    }
}

impl Front {
    /// The binding of this MCP session; on `initialize` (`client` set), made from the request's
    /// credentials. A request without `initialize` is bound only by a session token.
    async fn binding(
        &self,
        ctx: &RequestContext<RoleServer>,
        client: Option<&Implementation>,
    ) -> Result<&Binding, ErrorData> {
        let creds = credentials(ctx)?;
        if let Some(bound) = self.bound.get() {
            if bound.caller != creds.fingerprint {
                return Err(ErrorData::invalid_request(
                    "this MCP session was opened with other credentials: send the same \
                     `Authorization` header as its `initialize`",
                    None,
                ));
            }
            return Ok(bound);
        }
        let stateless_client = ctx.client_info().map(|c| c.name.clone());
        self.bound
            .get_or_try_init(|| async { self.bind(creds, client, stateless_client).await })
            .await
    }

    async fn bind(
        &self,
        creds: Credentials,
        client: Option<&Implementation>,
        stateless_client: Option<String>,
    ) -> Result<Binding, ErrorData> {
        let rt = self.rt.clone();
        let agent_name = client.map(|c| c.name.clone());
        let initialize = client.is_some();
        let caller = creds.fingerprint.clone();
        // Zero configuration (loopback, no API keys): a client that makes stateless requests
        // without a session token works in one session of its own, opened on its first
        // request, so its provenance spans its requests as an MCP session's does.
        let implicit = (!initialize
            && creds.session.is_none()
            && matches!(creds.caller, Caller::Anonymous)
            && rt.config().api_keys.is_empty())
        .then(|| stateless_client.unwrap_or_else(|| "mcp-agent".to_owned()));
        let upstreams = self.upstreams.clone();
        let session = tokio::task::spawn_blocking(move || -> Result<_, ErrorData> {
            if let Some(agent) = implicit {
                let mut known = upstreams.implicit.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(id) = known.get(&agent) {
                    if let Ok(session) = rt.session(id) {
                        return Ok(session);
                    }
                }
                let session = open(&rt, "user".into(), agent.clone())?;
                known.insert(agent, session.id.clone());
                return Ok(session);
            }
            let claimed = match (&creds.caller, creds.session) {
                // A session token alone names its session.
                (Caller::Token(token), None) => {
                    Some(rt.session_for_token(token).map_err(runtime_error)?)
                }
                (_, id) => id,
            };
            match (creds.caller, claimed) {
                (Caller::Token(token), Some(id)) => {
                    rt.authenticate(&id, &token).map_err(runtime_error)?;
                    rt.session(&id).map_err(runtime_error)
                }
                (Caller::Token(_), None) => Err(ErrorData::invalid_request(
                    "the session token names no session",
                    None,
                )),
                (_, _) if !initialize => Err(ErrorData::invalid_request(
                    "a request without `initialize` must be bound to a Warden session: send \
                     `Authorization: Bearer <session token>` \
                     from POST /v1/sessions",
                    None,
                )),
                (Caller::Key(name), _) => {
                    // The key's limits apply as on POST /v1/sessions.
                    let key = rt.config().api_keys.iter().find(|k| k.name == name);
                    if let Some(k) = key.filter(|k| k.role != crate::config::Role::Agent) {
                        return Err(ErrorData::invalid_request(crate::api::people_key(k), None));
                    }
                    let allowed = key.is_some_and(|k| {
                        k.allows_agent(&name) && k.allows_principal(&name) && k.allows_profile(None)
                    });
                    if !allowed {
                        return Err(ErrorData::invalid_request(
                            format!(
                                "API key `{name}` may not open a session for principal `{name}` \
                                 without a profile (add `{name}` to its `principals`), or open \
                                 the session with POST /v1/sessions and bind it with its token"
                            ),
                            None,
                        ));
                    }
                    open(&rt, name.clone(), name)
                }
                (Caller::Anonymous, _) if !rt.config().api_keys.is_empty() => {
                    Err(ErrorData::invalid_request(
                        "/mcp needs `Authorization: Bearer <API key>`",
                        None,
                    ))
                }
                (Caller::Anonymous, _) => open(
                    &rt,
                    "user".into(),
                    agent_name.unwrap_or_else(|| "mcp-agent".into()),
                ),
            }
        })
        .await
        .map_err(|e| {
            ErrorData::internal_error(format!("opening the session failed: {e}"), None)
        })??;
        tracing::info!(
            session = %session.id,
            principal = %session.principal,
            agent = %session.agent,
            profile = session.profile.as_deref().unwrap_or(""),
            "warden mcp: MCP session bound"
        );
        let mcp = &self.rt.config().mcp;
        let guard = Guard::new(
            self.rt.clone(),
            &session,
            mcp.hide_unusable_tools,
            Duration::from_secs(mcp.hold_timeout_secs),
        );
        Ok(Binding { guard, caller })
    }
}

/// Open a Warden session for an MCP session that no session token binds: no profile, no
/// instruction (a host may add one in `_meta`, `io.warden/instruction`).
fn open(
    rt: &Runtime,
    principal: String,
    agent: String,
) -> Result<warden_model::Session, ErrorData> {
    let request = OpenRequest {
        principal,
        agent,
        profile: None,
        task: Default::default(),
        instruction: String::new(),
        channel: "mcp".into(),
    };
    rt.open_session(request)
        .map(|(s, _)| s)
        .map_err(runtime_error)
}

/// Split `<upstream>__<tool>` at the first separator (upstream names never hold one).
fn split_name(name: &str) -> Option<(&str, &str)> {
    name.split_once(TOOL_SEPARATOR)
        .filter(|(up, tool)| !up.is_empty() && !tool.is_empty())
}

impl Front {
    /// The one upstream, when Warden fronts exactly one: then `/mcp` is transparent (tools keep
    /// their own names; resources, prompts, logging and completions are forwarded).
    fn single(&self) -> Option<&Slot> {
        match self.upstreams.slots.len() {
            1 => self.upstreams.slots.values().next(),
            _ => None,
        }
    }

    /// The upstreams that are up (started now if need be) and can do what `can` asks, with
    /// their peers; one that cannot be reached within its list deadline is left out (and
    /// logged). All are asked at once, so a slow one delays no other.
    async fn connected(
        &self,
        era: Era,
        can: impl Fn(&ServerCapabilities) -> bool,
    ) -> Vec<(&Slot, Peer<RoleClient>)> {
        let reached = self.upstreams.slots.values().map(|slot| async move {
            let connection = tokio::time::timeout(slot.list_deadline(), slot.connection(era)).await;
            match connection {
                Ok(Ok(c)) => Some((slot, c.peer().clone())),
                Ok(Err(e)) => {
                    tracing::warn!(upstream = slot.name(), "warden mcp: left out: {e}");
                    None
                }
                Err(_) => {
                    tracing::warn!(
                        upstream = slot.name(),
                        "warden mcp: left out: it is still starting after {} s",
                        slot.list_deadline().as_secs()
                    );
                    None
                }
            }
        });
        futures_util::future::join_all(reached)
            .await
            .into_iter()
            .flatten()
            .filter(|(_, peer)| peer.peer_info().is_some_and(|i| can(&i.capabilities)))
            .collect()
    }

    /// Each able upstream's list (of `what`, for the log), by upstream; one that cannot be
    /// reached, fails to list or does not answer within its list deadline is left out (and
    /// logged by name), so one server down or stuck hides and delays nothing of the others.
    async fn gather<T, Fut>(
        &self,
        era: Era,
        what: &str,
        can: impl Fn(&ServerCapabilities) -> bool,
        list: impl Fn(Peer<RoleClient>) -> Fut,
    ) -> Vec<(&Slot, Vec<T>)>
    where
        Fut: std::future::Future<Output = Result<Vec<T>, ServiceError>>,
    {
        let up = self.connected(era, can).await;
        let asked = up.into_iter().map(|(slot, peer)| {
            let listed = list(peer);
            async move {
                match tokio::time::timeout(slot.list_deadline(), listed).await {
                    Ok(Ok(items)) => Some((slot, items)),
                    Ok(Err(e)) => {
                        tracing::warn!(
                            upstream = slot.name(),
                            "warden mcp: {what} left out this upstream: {e}"
                        );
                        None
                    }
                    Err(_) => {
                        tracing::warn!(
                            upstream = slot.name(),
                            "warden mcp: {what} left out this upstream: it did not answer within {} s",
                            slot.list_deadline().as_secs()
                        );
                        None
                    }
                }
            }
        });
        futures_util::future::join_all(asked)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The upstream a request that names none goes to: the one Warden fronts, or (in front of
    /// several) the one that listed this resource URI, or the only one with resources.
    fn route(&self, uri: Option<&str>) -> Result<&Slot, ErrorData> {
        if let Some(slot) = self.single() {
            return Ok(slot);
        }
        let listed = uri.and_then(|u| {
            self.upstreams
                .resources
                .lock()
                .ok()
                .and_then(|m| m.get(u).cloned())
        });
        if let Some(slot) = listed.and_then(|name| self.upstreams.slots.get(&name)) {
            return Ok(slot);
        }
        let with_resources: Vec<&Slot> = self
            .upstreams
            .slots
            .values()
            .filter(|s| s.capabilities().is_some_and(|c| c.resources.is_some()))
            .collect();
        match (uri, with_resources.as_slice()) {
            (Some(_), [only]) => Ok(only),
            (Some(uri), _) => Err(ErrorData::invalid_params(
                format!(
                    "no MCP server behind Warden listed the resource `{uri}`; list resources \
                     (resources/list) first"
                ),
                None,
            )),
            (None, _) => Err(ErrorData::invalid_request(
                "logging levels go to every server; completions name a prompt or a resource",
                None,
            )),
        }
    }

    /// The upstream a namespaced name (`<upstream>__<name>`) belongs to, and the name there.
    fn route_name<'n>(&self, name: &'n str) -> Result<(&Slot, &'n str), ErrorData> {
        if let Some(slot) = self.single() {
            return Ok((slot, name));
        }
        split_name(name)
            .and_then(|(up, rest)| self.upstreams.slots.get(up).map(|slot| (slot, rest)))
            .ok_or_else(|| {
                ErrorData::invalid_params(
                    format!(
                        "unknown name `{name}`: names are `<upstream>{TOOL_SEPARATOR}<name>`; \
                         upstreams: {}",
                        self.upstreams
                            .slots
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None,
                )
            })
    }

    /// Forward a request other than a tool call to an upstream.
    async fn passthrough(
        &self,
        slot: &Slot,
        request: ClientRequest,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let bound = self.binding(ctx, None).await?;
        bound.guard.note_instruction(&ctx.meta);
        let name = slot.name();
        let limit = slot.deadline();
        let answered = tokio::time::timeout(limit, async {
            let connection = slot.connection(Era::of(ctx)).await.map_err(|e| {
                ErrorData::internal_error(
                    format!("could not reach the MCP server `{name}`: {e}"),
                    None,
                )
            })?;
            mcp::forward(&connection.link, connection.peer(), request, ctx)
                .await
                .map_err(mcp::upstream_error)
        })
        .await;
        answered.unwrap_or_else(|_| {
            Err(ErrorData::internal_error(
                format!(
                    "the MCP server `{name}` did not answer within {} s (its `timeout_secs`)",
                    limit.as_secs()
                ),
                None,
            ))
        })
    }

    /// Forward `resources/read` or `prompts/get` and observe what it returns as untrusted content.
    async fn read_and_observe(
        &self,
        slot: &Slot,
        request: ClientRequest,
        pseudo_tool: &str,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let result = self.passthrough(slot, request, ctx).await?;
        let bound = self.binding(ctx, None).await?;
        let upstream = slot.name();
        mcp::register_pseudo_tools(&self.rt, upstream);
        bound
            .guard
            .observe(&format!("mcp:{}", ctx.id), upstream, pseudo_tool, &result)?;
        Ok(result)
    }
}

fn unexpected(method: &str, result: ServerResult) -> ErrorData {
    ErrorData::internal_error(
        format!("the MCP server answered {method} with something else"),
        serde_json::to_value(&result).ok(),
    )
}

impl ServerHandler for Front {
    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        self.upstreams.tools.lock().ok()?.get(name).cloned()
    }

    fn get_info(&self) -> InitializeResult {
        let mut info = InitializeResult::new(ServerCapabilities::builder().enable_tools().build());
        // In front of one running server (what `server/discover` reads in 2026-07-28): what it
        // can do, as `initialize` says, bar change notifications and subscriptions, which that
        // era delivers through `subscriptions/listen`, not served here.
        if let Some(mut caps) = self.single().and_then(Slot::capabilities) {
            if let Some(tools) = caps.tools.as_mut() {
                tools.list_changed = None;
            }
            if let Some(prompts) = caps.prompts.as_mut() {
                prompts.list_changed = None;
            }
            if let Some(resources) = caps.resources.as_mut() {
                resources.list_changed = None;
                resources.subscribe = None;
            }
            info.capabilities = caps;
        }
        info.server_info = Implementation::new("warden", env!("CARGO_PKG_VERSION"));
        info.instructions = Some(
            "Tools and prompts of several MCP servers behind Warden, each named \
             `<server>__<name>`, and their resources. Warden checks every tool call against the \
             user's task; a refused call says why."
                .into(),
        );
        info
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        self.binding(&ctx, Some(&request.client_info)).await?;
        ctx.peer.set_peer_info(request.clone());
        let mut result = self.negotiate_initialize(&request)?;
        // In front of one server, say what it can do (and what it says about itself).
        if let Some(slot) = self.single() {
            if let Ok(connection) = slot.connection(Era::Handshake).await {
                if let Some(upstream) = connection.peer().peer_info() {
                    result.capabilities = upstream.capabilities.clone();
                    result.instructions = upstream.instructions.clone();
                }
            }
        } else {
            // In front of several: what any of them can do, bar change notifications.
            let caps = &mut result.capabilities;
            for (_, peer) in self.connected(Era::Handshake, |_| true).await {
                let Some(info) = peer.peer_info() else {
                    continue;
                };
                let theirs = &info.capabilities;
                if theirs.prompts.is_some() {
                    caps.prompts.get_or_insert_with(Default::default);
                }
                if theirs.resources.is_some() {
                    caps.resources.get_or_insert_with(Default::default);
                }
                if theirs.logging.is_some() {
                    caps.logging.get_or_insert_with(Default::default);
                }
                if theirs.completions.is_some() {
                    caps.completions.get_or_insert_with(Default::default);
                }
            }
        }
        Ok(result)
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        if let Some(slot) = self.single() {
            let request = ClientRequest::ListResourcesRequest(match request {
                Some(p) => ListResourcesRequest::with_param(p),
                None => ListResourcesRequest::default(),
            });
            return match self.passthrough(slot, request, &ctx).await? {
                ServerResult::ListResourcesResult(r) => Ok(r),
                other => Err(unexpected("resources/list", other)),
            };
        }
        // In front of several: every server's resources, remembering whose each URI is.
        self.binding(&ctx, None).await?;
        let lists = self
            .gather(
                Era::of(&ctx),
                "resources/list",
                |c| c.resources.is_some(),
                |peer| async move { peer.list_all_resources().await },
            )
            .await;
        let mut all = Vec::new();
        for (slot, listed) in lists {
            if let Ok(mut owners) = self.upstreams.resources.lock() {
                for r in &listed {
                    owners.insert(r.uri.clone(), slot.name().to_owned());
                }
            }
            all.extend(listed);
        }
        Ok(ListResourcesResult::with_all_items(all))
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        if let Some(slot) = self.single() {
            let request = ClientRequest::ListResourceTemplatesRequest(match request {
                Some(p) => ListResourceTemplatesRequest::with_param(p),
                None => ListResourceTemplatesRequest::default(),
            });
            return match self.passthrough(slot, request, &ctx).await? {
                ServerResult::ListResourceTemplatesResult(r) => Ok(r),
                other => Err(unexpected("resources/templates/list", other)),
            };
        }
        // Several servers' templates cannot say whose a URI made from them is: in front of
        // several, only listed resources are read.
        self.binding(&ctx, None).await?;
        Ok(ListResourceTemplatesResult::with_all_items(Vec::new()))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let slot = self.route(Some(&request.uri))?;
        let request = ClientRequest::ReadResourceRequest(ReadResourceRequest::new(request));
        match self
            .read_and_observe(slot, request, mcp::RESOURCES_READ, &ctx)
            .await?
        {
            ServerResult::ReadResourceResult(r) => Ok(ReadResourceResponse::Complete(r)),
            ServerResult::InputRequiredResult(r) => Ok(ReadResourceResponse::InputRequired(r)),
            other => Err(unexpected("resources/read", other)),
        }
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let slot = self.route(Some(&request.uri))?;
        let request = ClientRequest::SubscribeRequest(SubscribeRequest::new(request));
        self.passthrough(slot, request, &ctx).await.map(|_| ())
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let slot = self.route(Some(&request.uri))?;
        let request = ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(request));
        self.passthrough(slot, request, &ctx).await.map(|_| ())
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        if let Some(slot) = self.single() {
            let request = ClientRequest::ListPromptsRequest(match request {
                Some(p) => ListPromptsRequest::with_param(p),
                None => ListPromptsRequest::default(),
            });
            return match self.passthrough(slot, request, &ctx).await? {
                ServerResult::ListPromptsResult(r) => Ok(r),
                other => Err(unexpected("prompts/list", other)),
            };
        }
        // In front of several: every server's prompts, named `<upstream>__<prompt>`.
        self.binding(&ctx, None).await?;
        let lists = self
            .gather(
                Era::of(&ctx),
                "prompts/list",
                |c| c.prompts.is_some(),
                |peer| async move { peer.list_all_prompts().await },
            )
            .await;
        let mut all = Vec::new();
        for (slot, listed) in lists {
            all.extend(listed.into_iter().map(|mut p| {
                p.name = format!("{}{TOOL_SEPARATOR}{}", slot.name(), p.name);
                p
            }));
        }
        Ok(ListPromptsResult::with_all_items(all))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let mut request = request;
        let (slot, name) = self.route_name(&request.name)?;
        request.name = name.to_owned();
        let request = ClientRequest::GetPromptRequest(GetPromptRequest::new(request));
        match self
            .read_and_observe(slot, request, mcp::PROMPTS_GET, &ctx)
            .await?
        {
            ServerResult::GetPromptResult(r) => Ok(GetPromptResponse::Complete(r)),
            ServerResult::InputRequiredResult(r) => Ok(GetPromptResponse::InputRequired(r)),
            other => Err(unexpected("prompts/get", other)),
        }
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        if let Some(slot) = self.single() {
            let request = ClientRequest::SetLevelRequest(SetLevelRequest::new(request));
            return self.passthrough(slot, request, &ctx).await.map(|_| ());
        }
        // In front of several: every server that logs.
        self.binding(&ctx, None).await?;
        for (slot, peer) in self.connected(Era::of(&ctx), |c| c.logging.is_some()).await {
            match tokio::time::timeout(slot.deadline(), peer.set_level(request.clone())).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(upstream = slot.name(), "warden mcp: logging/setLevel: {e}")
                }
                Err(_) => tracing::warn!(
                    upstream = slot.name(),
                    "warden mcp: logging/setLevel: no answer within {} s",
                    slot.deadline().as_secs()
                ),
            }
        }
        Ok(())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let mut request = request;
        let slot = match &mut request.r#ref {
            rmcp::model::Reference::Prompt(prompt) => {
                let (slot, name) = self.route_name(&prompt.name)?;
                prompt.name = name.to_owned();
                slot
            }
            rmcp::model::Reference::Resource(resource) => self.route(Some(&resource.uri))?,
            _ => self.route(None)?,
        };
        let request = ClientRequest::CompleteRequest(CompleteRequest::new(request));
        match self.passthrough(slot, request, &ctx).await? {
            ServerResult::CompleteResult(r) => Ok(r),
            other => Err(unexpected("completion/complete", other)),
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let bound = self.binding(&ctx, None).await?;
        bound.guard.note_instruction(&ctx.meta);
        let lists = self
            .gather(
                Era::of(&ctx),
                "tools/list",
                |_| true,
                |peer| async move { peer.list_all_tools().await },
            )
            .await;
        let mut all = Vec::new();
        for (slot, mut tools) in lists {
            bound.guard.list_tools(slot.name(), &mut tools)?;
            let single = self.upstreams.slots.len() == 1;
            for mut tool in tools {
                if !single {
                    tool.name = format!("{}{TOOL_SEPARATOR}{}", slot.name(), tool.name).into();
                }
                all.push(tool);
            }
        }
        if let Ok(mut known) = self.upstreams.tools.lock() {
            for tool in &all {
                known.insert(tool.name.to_string(), tool.clone());
            }
        }
        Ok(ListToolsResult::with_all_items(all))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let bound = self.binding(&ctx, None).await?;
        bound.guard.note_instruction(&ctx.meta);
        let name = request.name.to_string();
        let routed = match self.single() {
            // In front of one server, tools keep their own names.
            Some(slot) => Some((slot, name.as_str())),
            None => split_name(&name)
                .and_then(|(up, tool)| self.upstreams.slots.get(up).map(|slot| (slot, tool))),
        };
        let Some((slot, tool)) = routed else {
            return Err(ErrorData::invalid_params(
                format!(
                    "unknown tool `{name}`: tools are named `<upstream>{TOOL_SEPARATOR}<tool>`; \
                     upstreams: {}",
                    self.upstreams
                        .slots
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None,
            ));
        };
        // What the server says about the tool, if it says it in time; else its name's guess.
        let learned = tokio::time::timeout(slot.list_deadline(), async {
            if let Ok(connection) = slot.connection(Era::of(&ctx)).await {
                mcp::learn_tools(&self.rt, slot.name(), connection.peer(), tool).await;
            }
        })
        .await;
        if learned.is_err() {
            tracing::warn!(
                upstream = slot.name(),
                "warden mcp: could not learn `{tool}` from its server within {} s",
                slot.list_deadline().as_secs()
            );
        }
        let arguments = request.arguments.clone();
        let mut upstream_request = request;
        upstream_request.name = tool.to_owned().into();
        let confirmation = mcp::take_confirmation(&mut upstream_request);
        let forwarded = forward_call(slot, upstream_request, &ctx);
        let result = bound
            .guard
            .call_tool(
                slot.name(),
                tool,
                arguments.as_ref(),
                confirmation,
                &ctx,
                forwarded,
            )
            .await?;
        match result {
            ServerResult::CallToolResult(r) => Ok(CallToolResponse::Complete(r)),
            ServerResult::InputRequiredResult(r) => Ok(CallToolResponse::InputRequired(r)),
            ServerResult::CreateTaskResult(r) => Ok(CallToolResponse::Task(r)),
            other => Err(ErrorData::internal_error(
                format!(
                    "upstream `{}` answered tools/call with something else",
                    slot.name()
                ),
                serde_json::to_value(&other).ok(),
            )),
        }
    }
}

/// Send an allowed call to its upstream (starting it if need be). A server that cannot be
/// reached, or that dies during the call, makes a refusal naming it, not a protocol error: the
/// agent's session stays usable, and the next call starts the server again.
async fn forward_call(
    slot: &Slot,
    request: CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
) -> Result<Forwarded, ErrorData> {
    let name = slot.name();
    let tool = request.name.to_string();
    let limit = Duration::from_secs(slot.config.timeout_secs);
    let reached = tokio::time::timeout(limit, slot.connection(Era::of(ctx)))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "it is still starting after {} s (its `timeout_secs`)",
                limit.as_secs()
            ))
        });
    let connection = match reached {
        Ok(c) => c,
        Err(e) => {
            return Ok(Forwarded::Unavailable(format!(
                "Warden could not reach the MCP server `{name}` for this call to `{tool}`, so it \
                 was not carried out: {e}. Warden tries to start it again on the next call."
            )))
        }
    };
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(request));
    let forwarded = mcp::forward(&connection.link, connection.peer(), request, ctx);
    let Ok(answer) = tokio::time::timeout(limit, forwarded).await else {
        // A slow tool, or a connection that will never answer (a remote server that lost
        // Warden's session and says so in a way the client cannot match to the call): ask.
        let ping = ClientRequest::PingRequest(Default::default());
        let pinged = tokio::time::timeout(PING_WAIT, connection.peer().send_request(ping)).await;
        let alive = matches!(pinged, Ok(Ok(_)));
        if !alive {
            slot.discard(&connection);
        }
        return Ok(Forwarded::Unavailable(format!(
            "The MCP server `{name}` did not answer this call to `{tool}` within {} s; it may \
             still be carrying it out.{}",
            limit.as_secs(),
            if alive {
                ""
            } else {
                " It did not answer a ping either, so Warden connects to it afresh on the next call."
            }
        )));
    };
    match answer {
        Ok(result) => Ok(Forwarded::Answer(Box::new(result))),
        Err(ServiceError::McpError(e)) => Err(e),
        Err(e @ ServiceError::Cancelled { .. }) => Err(mcp::upstream_error(e)),
        Err(e) => {
            // The connection is broken (a dead child, a lost or restarted remote server, or
            // cut by Warden): drop it, so the next call connects afresh rather than waiting on it.
            slot.discard(&connection);
            if let Some(why) = connection.link.cut_reason() {
                return Ok(Forwarded::Unavailable(format!(
                    "The MCP server `{name}` could not answer this call to `{tool}`: {why}, so \
                     Warden dropped the answer and the connection. The call may have been \
                     carried out. Warden starts the server again on the next call."
                )));
            }
            Ok(Forwarded::Unavailable(format!(
            "The MCP server `{name}` failed during this call to `{tool}` ({e}); it may not have \
             been carried out. Warden starts the server again on the next call."
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_at_the_first_separator() {
        assert_eq!(split_name("files__read_file"), Some(("files", "read_file")));
        assert_eq!(split_name("a__b__c"), Some(("a", "b__c")));
        assert_eq!(split_name("read_file"), None);
        assert_eq!(split_name("__x"), None);
        assert_eq!(split_name("x__"), None);
    }
}
