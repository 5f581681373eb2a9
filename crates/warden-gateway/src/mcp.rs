//! The MCP stdio wrapper: Warden is an MCP server to the agent (over stdin/stdout) and an MCP
//! client to the real server (a child process); every `tools/call` is decided before it is
//! forwarded (a held one waits for a person's approval), and every result the agent reads is
//! observed for provenance.
//!
//! What both MCP fronts share lives here too: [`Guard`] (one agent session: decide, wait for a
//! person, observe, filter `tools/list`), [`forward`] (a request upstream with progress and
//! cancellation relayed) and [`UpstreamClient`] (Warden as the upstream's client). The streamable
//! HTTP front (`mcp_http`) calls the same functions.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rmcp::model::{
    CallToolResult, CancelledNotification, CancelledNotificationParam, ClientConfig,
    ClientNotification, ClientRequest, ClientResult, ContentBlock, ErrorData, GetMeta,
    Implementation, InitializeResult, JsonObject, ProgressToken, ProtocolVersion,
    RequestMetaObject, ServerNotification, ServerRequest, ServerResult,
};
use rmcp::service::{
    NotificationContext, Peer, PeerRequestOptions, RequestContext, RequestHandle, RoleClient,
    RoleServer, RunningServiceCancellationToken, ServerInitializeError, ServiceRole,
};
use rmcp::{Service, ServiceError, ServiceExt};
use serde_json::Value;
use warden_model::{Call, Params, Session, Verdict};
use warden_policy::tools::Annotations;
use warden_policy::{Step, ToolSpec};
use warden_store::Approval;

use crate::runtime::{ApprovalOutcome, DecisionRecord, OpenRequest, Runtime, RuntimeError};

/// A started upstream as its client runs it.
pub(crate) type UpstreamService = rmcp::service::RunningService<RoleClient, UpstreamClient>;

/// The `_meta` key an MCP host may use to pass a further user instruction (trusted) to Warden.
/// Warden keys (`io.warden/…`) are never forwarded to the server.
pub const META_INSTRUCTION: &str = "io.warden/instruction";
/// The `_meta` key of a refused call's result that carries the decision as JSON.
pub const META_DECISION: &str = "io.warden/decision";
/// The pseudo-tools under which `resources/read` and `prompts/get` content is observed.
pub const RESOURCES_READ: &str = "resources/read";
pub const PROMPTS_GET: &str = "prompts/get";
/// The pseudo-tool under which the tool list an agent reads (names, descriptions, schemas) is
/// observed: a server's text the agent reads, as untrusted as its results.
pub const TOOLS_LIST: &str = "tools/list";

/// How to run the wrapper: the server's command and the session the agent works in.
#[derive(Debug, Clone)]
pub struct StdioOptions {
    /// The MCP server's program and its arguments.
    pub command: Vec<String>,
    /// The Warden session opened for this connection.
    pub session: OpenRequest,
    /// Hide from `tools/list` the tools the session's profile can never use.
    pub hide_unusable_tools: bool,
    /// How long a held call waits for a person's approval; zero refuses it at once.
    pub hold_timeout: Duration,
}

/// Why the wrapper could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("no MCP server command was given: put it after `--`, e.g. `warden mcp -- npx -y @modelcontextprotocol/server-filesystem /tmp`")]
    NoCommand,
    #[error("opening the Warden session: {0}")]
    Session(#[from] RuntimeError),
    #[error("{0}")]
    Spawn(String),
    #[error("the MCP client on stdin did not initialize a session: {0}")]
    Initialize(#[from] Box<ServerInitializeError>),
}

/// Run the wrapper until the agent closes stdin or the server exits. Opens the session first, so
/// a bad profile or an unwritable audit log is reported before any protocol traffic.
pub async fn run_stdio(rt: Arc<Runtime>, opts: StdioOptions) -> Result<(), StdioError> {
    let (program, args) = opts.command.split_first().ok_or(StdioError::NoCommand)?;
    let (session, _token) = rt.open_session(opts.session)?;
    let link = Arc::new(Link::default());
    let child = spawn_server(program, args, &Default::default(), &link)
        .map_err(|e| StdioError::Spawn(format!("the MCP server: {e}")))?;
    tracing::info!(
        session = %session.id,
        principal = %session.principal,
        agent = %session.agent,
        profile = session.profile.as_deref().unwrap_or(""),
        "warden mcp: guarding `{}`",
        opts.command.join(" ")
    );
    let gateway = Arc::new(Gateway {
        guard: Guard::new(rt, &session, opts.hide_unusable_tools, opts.hold_timeout),
        child: Mutex::new(Some(child)),
        upstream: tokio::sync::OnceCell::new(),
        link,
    });
    let running = GatewayService(gateway.clone())
        .serve(rmcp::transport::io::stdio_pipes())
        .await
        .map_err(Box::new)?;
    // The agent cannot use a session whose server is gone: end it, and the host restarts us.
    let stop = running.cancellation_token();
    let link = gateway.link.clone();
    let watcher = tokio::spawn(async move {
        link.upstream_gone.notified().await;
        match link.cut_reason() {
            Some(why) => tracing::error!(
                "warden mcp: the MCP server's connection was cut: {why}; closing the session"
            ),
            None => tracing::warn!("warden mcp: the MCP server exited; closing the session"),
        }
        // The calls that were waiting on the server answer first (they fail, saying why).
        tokio::time::sleep(ANSWER_GRACE).await;
        stop.cancel();
    });
    let quit = running.waiting().await;
    watcher.abort();
    tracing::debug!(?quit, "warden mcp: the client side closed");
    if let Some(up) = gateway.upstream.get() {
        up.shut_down().await;
    }
    Ok(())
}

/// How long the answers to calls still waiting on a server that went away have to reach the
/// agent before `warden mcp` closes the session.
const ANSWER_GRACE: Duration = Duration::from_millis(500);

/// A client's request that is with the server now (see `Link::calling`).
struct Calling {
    id: u64,
    peer: Peer<RoleServer>,
    /// The least severe log message the request asked for: `None` for a request of the
    /// handshake era (the session's `logging/setLevel` applies at the server), `Some(None)` for
    /// a 2026-07-28 request that asked for none (logs only go to a request that asks), else
    /// `Some(Some(rank))` (the rank of its `io.modelcontextprotocol/logLevel`).
    logs: Option<Option<usize>>,
}

/// How severe a log level is, least first (`debug` 0 … `emergency` 7).
fn log_rank(level: &str) -> Option<usize> {
    [
        "debug",
        "info",
        "notice",
        "warning",
        "error",
        "critical",
        "alert",
        "emergency",
    ]
    .iter()
    .position(|l| *l == level)
}

/// What both sides of one upstream connection share: the agent's peer (for the server's requests
/// and notifications; unset where several agents share the upstream, as behind the HTTP front)
/// and the map from the progress tokens Warden sent upstream to the asking agent and its token.
#[derive(Default)]
pub(crate) struct Link {
    agent: OnceLock<Peer<RoleServer>>,
    progress: Mutex<Progress>,
    /// The clients whose requests are with the server now (one entry per request, by a number
    /// of its own), for a server shared by several clients (`/mcp`): what the server asks or
    /// says while a call runs goes to the one client calling it.
    calling: Mutex<Vec<Calling>>,
    next_call: std::sync::atomic::AtomicU64,
    upstream_gone: tokio::sync::Notify,
    /// Why Warden cut the connection, when it did (a message over the size limit).
    cut: Mutex<Option<String>>,
    /// The server's notifications as they came off the wire ([`Arrivals`]) and as Warden has
    /// passed them on: rmcp hands each to a task of its own, so without waiting for them the
    /// answer to a call could reach the client before the progress and log messages the
    /// server sent ahead of it, and those would be lost ([`Link::settle`]).
    arrived: std::sync::atomic::AtomicU64,
    passed_on: std::sync::atomic::AtomicU64,
    passed: tokio::sync::Notify,
}

/// Where the server's progress notifications go: per progress token Warden sent upstream, the
/// asking client and its own token. rmcp picks the upstream token as it sends the request, so
/// the server may report progress before Warden knows whose token it is: such notifications
/// wait in `unclaimed` (at most [`MAX_UNCLAIMED`], oldest dropped first) until the call that
/// sent the token claims them, under the same lock, so none is lost in between.
#[derive(Default)]
struct Progress {
    askers: HashMap<ProgressToken, (Peer<RoleServer>, ProgressToken)>,
    unclaimed: std::collections::VecDeque<(
        rmcp::model::ProgressNotification,
        rmcp::model::NotificationMetaObject,
    )>,
}

/// Most progress notifications kept for a token no call has claimed yet.
const MAX_UNCLAIMED: usize = 1024;

impl Link {
    /// Who the server's requests and notifications go to: the one client of a wrapped server
    /// (`warden mcp`), else the one client whose request is with a shared server now. When
    /// several clients' requests are, the server's message has no one addressee: `None`.
    fn addressee(&self) -> Option<Peer<RoleServer>> {
        self.addressee_of(None)
    }

    /// [`Link::addressee`] of a log message of this `level`: none for a request that did not
    /// ask for logs that severe.
    fn addressee_of(&self, level: Option<&str>) -> Option<Peer<RoleServer>> {
        if let Some(agent) = self.agent.get() {
            return Some(agent.clone());
        }
        let calling = self.calling.lock().ok()?;
        let [only] = calling.as_slice() else {
            return None;
        };
        let wanted = match (level, only.logs) {
            (None, _) | (_, None) => true,
            (Some(_), Some(None)) => false,
            (Some(level), Some(Some(least))) => log_rank(level).is_none_or(|r| r >= least),
        };
        wanted.then(|| only.peer.clone())
    }

    /// Warden ends the connection for this reason: its pending requests fail at once.
    pub(crate) fn cut(&self, why: String) {
        if let Ok(mut cut) = self.cut.lock() {
            cut.get_or_insert(why);
        }
    }

    /// Why Warden cut the connection, if it did.
    pub(crate) fn cut_reason(&self) -> Option<String> {
        self.cut.lock().ok().and_then(|c| c.clone())
    }

    /// Wait until every notification that arrived before now has been passed on (or dropped),
    /// so what the server said during a call reaches its client before the call's answer.
    /// A client that reads slowly (a busy machine, a slow link: passing a notification on
    /// waits for room in its stream) gets them all, in order; one that stops reading delays an
    /// answer by [`SETTLE_WAIT`] after the last notification passed on, no more.
    async fn settle(&self) {
        use std::sync::atomic::Ordering;
        let arrived = self.arrived.load(Ordering::Acquire);
        loop {
            let passed = self.passed.notified();
            if self.passed_on.load(Ordering::Acquire) >= arrived {
                return;
            }
            if tokio::time::timeout(SETTLE_WAIT, passed).await.is_err() {
                tracing::debug!(
                    "warden mcp: answering before the server's earlier notifications were \
                     passed on (none passed on for {SETTLE_WAIT:?})"
                );
                return;
            }
        }
    }
}

/// The longest an answer waits for the next of the notifications the server sent before it.
const SETTLE_WAIT: Duration = Duration::from_secs(2);

/// Marks a notification counted in [`Link::arrived`] on its way in.
#[derive(Clone, Copy)]
struct Arrived;

/// Counts one passed-on notification when dropped: on every path out of the handler.
struct PassedOn<'a>(&'a Link);

impl Drop for PassedOn<'_> {
    fn drop(&mut self) {
        self.0
            .passed_on
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.0.passed.notify_waiters();
    }
}

/// An upstream's transport that counts the server's notifications in the order they arrive,
/// before rmcp dispatches them: those its handler will see (rmcp keeps cancellations and
/// subscription streams to itself), each marked [`Arrived`].
struct Arrivals<T> {
    inner: T,
    link: Arc<Link>,
}

impl<T: rmcp::transport::Transport<RoleClient>> rmcp::transport::Transport<RoleClient>
    for Arrivals<T>
{
    type Error = T::Error;

    fn send(
        &mut self,
        item: rmcp::service::TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<rmcp::service::RxJsonRpcMessage<RoleClient>> {
        use rmcp::model::{GetExtensions, JsonRpcMessage};
        let mut message = self.inner.receive().await?;
        if let JsonRpcMessage::Notification(n) = &mut message {
            let handled = !matches!(n.notification, ServerNotification::CancelledNotification(_))
                && n.notification.get_meta().subscription_id().is_none();
            if handled {
                n.notification.extensions_mut().insert(Arrived);
                self.link
                    .arrived
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            }
        }
        Some(message)
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

/// The connected server: its peer, the answer to the agent's `initialize`, and how to stop it.
struct Upstream {
    peer: Peer<RoleClient>,
    name: String,
    initialize: InitializeResult,
    stop: Mutex<Option<RunningServiceCancellationToken>>,
    task: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    process: tokio::sync::Mutex<Option<tokio::process::Child>>,
}

impl Upstream {
    /// Close the server's stdin and wait (bounded) for it to exit; kill it past that.
    async fn shut_down(&self) {
        if let Some(stop) = self.stop.lock().ok().and_then(|mut s| s.take()) {
            stop.cancel();
        }
        if let Some(task) = self.task.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        if let Some(mut process) = self.process.lock().await.take() {
            if tokio::time::timeout(Duration::from_secs(10), process.wait())
                .await
                .is_err()
            {
                tracing::warn!("warden mcp: the MCP server did not stop in time; killing it");
                let _ = process.kill().await;
            }
        }
    }
}

struct Gateway {
    guard: Guard,
    /// The spawned server, until the agent's `initialize` connects to it.
    child: Mutex<Option<(ServerPipes, tokio::process::Child)>>,
    upstream: tokio::sync::OnceCell<Upstream>,
    link: Arc<Link>,
}

/// One agent session as Warden guards it, whichever MCP front it came through: every
/// `tools/call` is decided here before it is forwarded, a held one waits here for a person, and
/// every result the agent reads is observed here.
pub(crate) struct Guard {
    pub(crate) rt: Arc<Runtime>,
    pub(crate) session: String,
    profile: Option<String>,
    hide_unusable_tools: bool,
    hold_timeout: Duration,
    /// A held call is put to the session's user in their MCP client (`confirm = "user"`).
    confirm_user: bool,
    /// Instructions already recorded from `_meta`, so a host that repeats one on every request
    /// does not grow the session.
    instructions: Mutex<HashSet<String>>,
    /// Per upstream, the digest of the tool list this session last observed: a host that lists
    /// again and again does not grow the session.
    lists_seen: Mutex<HashMap<String, String>>,
}

/// What forwarding a call upstream came to.
pub(crate) enum Forwarded {
    /// The server answered (a result to observe and pass on).
    Answer(Box<ServerResult>),
    /// The server could not be reached or failed mid-call: a refusal in these words, not observed.
    Unavailable(String),
}

/// The agent-facing MCP server (a newtype so the shared gateway can outlive `serve`).
struct GatewayService(Arc<Gateway>);

impl Guard {
    pub(crate) fn new(
        rt: Arc<Runtime>,
        session: &Session,
        hide_unusable_tools: bool,
        hold_timeout: Duration,
    ) -> Guard {
        let confirm_user =
            rt.config().confirm_for(session.profile.as_deref()) == warden_policy::Confirm::User;
        Guard {
            confirm_user,
            rt,
            session: session.id.clone(),
            profile: session.profile.clone(),
            hide_unusable_tools,
            hold_timeout,
            instructions: Mutex::new(HashSet::new()),
            lists_seen: Mutex::new(HashMap::new()),
        }
    }

    /// A further instruction from the host in `_meta` becomes a trusted user message, once.
    pub(crate) fn note_instruction(&self, meta: &RequestMetaObject) {
        let Some(text) = meta.get(META_INSTRUCTION).and_then(Value::as_str) else {
            return;
        };
        let fresh = self
            .instructions
            .lock()
            .map(|mut seen| seen.insert(text.to_owned()))
            .unwrap_or(false);
        if fresh {
            let step = Step::UserMessage {
                text: text.to_owned(),
            };
            if let Err(e) = self.rt.event(&self.session, step) {
                tracing::warn!("warden mcp: could not record the instruction from _meta: {e}");
            }
        }
    }

    /// `tools/call`: decided (and recorded) before anything reaches the server. `tool` is the
    /// server's own name of the tool (what policies and `[tools.<name>]` are keyed by); `forward`
    /// runs only for an allowed or approved call, and what it answers is observed before the
    /// agent reads it.
    pub(crate) async fn call_tool(
        &self,
        upstream: &str,
        tool: &str,
        arguments: Option<&JsonObject>,
        confirmation: Option<Confirmation>,
        ctx: &RequestContext<RoleServer>,
        forward: impl Future<Output = Result<Forwarded, ErrorData>>,
    ) -> Result<ServerResult, ErrorData> {
        if let Some(confirmation) = confirmation {
            // The retry of a call Warden held and put to the user (2026-07-28): their answer
            // decides that held call; it is not decided again.
            let call_id = match self.confirmed(tool, arguments, confirmation) {
                Ok(call_id) => call_id,
                Err(refusal) => return Ok(*refusal),
            };
            return match forward.await? {
                Forwarded::Answer(result) => {
                    self.observe(&call_id, upstream, tool, &result)?;
                    Ok(*result)
                }
                Forwarded::Unavailable(why) => Ok(refusal(why, None)),
            };
        }
        let args: Params = arguments.cloned().unwrap_or_default().into_iter().collect();
        let call = Call {
            tool: tool.to_owned(),
            args,
            call_id: String::new(),
            upstream: Some(upstream.to_owned()),
        };
        let trace = crate::telemetry::CallTrace {
            traceparent: ctx
                .meta
                .get("traceparent")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            mcp_method: Some("tools/call"),
        };
        let record = match self.rt.decide_traced(&self.session, call, &trace) {
            Ok(record) => record,
            Err(e) => {
                tracing::error!(tool = %tool, "warden mcp: no decision, call refused: {e}");
                return Ok(refusal(
                    format!(
                        "Warden could not decide this call to `{tool}`, so it was refused and not \
                     forwarded: {e}"
                    ),
                    None,
                ));
            }
        };
        match record.decision.verdict {
            Verdict::Allow => {}
            Verdict::Hold => {
                if let Some(refusal) = self.await_person(&record, arguments, ctx).await? {
                    return Ok(refusal);
                }
            }
            Verdict::Deny => {
                tracing::info!(
                    decision = %record.decision_id,
                    tool = %tool,
                    "warden mcp: call denied"
                );
                return Ok(refused(&record));
            }
        }
        match forward.await? {
            Forwarded::Answer(result) => {
                self.observe(&record.call_id, upstream, tool, &result)?;
                Ok(*result)
            }
            Forwarded::Unavailable(why) => {
                tracing::warn!(decision = %record.decision_id, tool, "warden mcp: {why}");
                Ok(refusal(why, Some(decision_meta(&record))))
            }
        }
    }

    /// A held call waits for a person's approval: `None` once approved, else the refusal to
    /// answer. If the agent cancels the call while it waits, the approval expires.
    async fn await_person(
        &self,
        record: &DecisionRecord,
        arguments: Option<&JsonObject>,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<Option<ServerResult>, ErrorData> {
        let id = &record.decision_id;
        if self.confirm_user {
            if let Some(answered) = self.ask_user(record, arguments, ctx).await {
                return Ok(answered);
            }
        }
        if self.hold_timeout.is_zero() {
            // Nobody will act on an approval nobody waits for.
            if let Err(e) = self
                .rt
                .expire_approval(id, "refused at once (--hold-timeout 0)")
            {
                tracing::warn!(decision = %id, "warden mcp: could not expire the approval: {e}");
            }
            tracing::info!(decision = %id, tool = %record.tool, "warden mcp: call held and refused");
            return Ok(Some(refused(record)));
        }
        tracing::info!(
            decision = %id,
            tool = %record.tool,
            "warden mcp: call held; waiting up to {} s for `warden approvals approve {id}`",
            self.hold_timeout.as_secs()
        );
        let outcome = tokio::select! {
            outcome = self.rt.await_approval(id, self.hold_timeout) => outcome,
            () = ctx.ct.cancelled() => {
                if let Err(e) = self.rt.expire_approval(id, "the client cancelled the call while it waited") {
                    tracing::warn!(decision = %id, "warden mcp: could not expire the approval: {e}");
                }
                return Err(ErrorData::internal_error("the request was cancelled", None));
            }
        };
        match outcome {
            Ok(ApprovalOutcome::Approved(a)) => {
                tracing::info!(
                    decision = %id,
                    approver = a.approver.as_deref().unwrap_or(""),
                    "warden mcp: held call approved; forwarding it"
                );
                Ok(None)
            }
            Ok(ApprovalOutcome::Denied(a)) | Ok(ApprovalOutcome::Expired(a)) => {
                tracing::info!(decision = %id, status = a.status.as_str(), "warden mcp: held call refused");
                Ok(Some(not_approved(record, &a)))
            }
            Err(e) => {
                tracing::error!(decision = %id, "warden mcp: waiting for the approval failed: {e}");
                Ok(Some(refusal(
                    format!(
                        "Warden held this call to `{}` for a person's approval (decision {id}) \
                         but could not wait for it, so it was refused and not forwarded: {e}",
                        record.tool
                    ),
                    Some(decision_meta(record)),
                )))
            }
        }
    }

    /// Put a held call to the session's user in their own MCP client (an `elicitation/create`
    /// request: what the call is, which argument came from where), and let their answer decide
    /// it: `Some(None)` when they confirmed it (forward it), `Some(refusal)` when they did not
    /// (no, cancel, no answer in time). `None` when the client cannot be asked (it declared no
    /// elicitation, or its era forbids a server's request, or the request failed): the call
    /// goes the approvals path.
    async fn ask_user(
        &self,
        record: &DecisionRecord,
        arguments: Option<&JsonObject>,
        ctx: &RequestContext<RoleServer>,
    ) -> Option<Option<ServerResult>> {
        let id = &record.decision_id;
        let stateful = Era::of(ctx) == Era::Handshake;
        let can_ask = if stateful {
            ctx.peer
                .peer_info()
                .is_some_and(|info| info.capabilities.elicitation.is_some())
        } else {
            ctx.client_capabilities()
                .is_some_and(|c| c.elicitation.is_some())
        };
        if !can_ask {
            tracing::info!(decision = %id, "warden mcp: the client cannot be asked; the call goes to the approvals queue");
            return None;
        }
        let reasons: Vec<&str> = record
            .decision
            .reasons
            .iter()
            .map(|r| r.message.as_str())
            .collect();
        let args =
            serde_json::to_value(arguments.cloned().unwrap_or_default()).unwrap_or(Value::Null);
        let question = question_for(&record.tool, &args, &reasons);
        let schema = match confirm_schema() {
            Ok(schema) => schema,
            Err(e) => {
                tracing::error!("warden mcp: the confirmation schema does not build: {e}");
                return None;
            }
        };
        if !stateful {
            // A server may not ask in this era: the answer asks the client to ask the user and
            // call again with the answer and this state (`confirmed`).
            let ask = rmcp::model::ElicitRequest::new(
                rmcp::model::ElicitRequestParams::FormElicitationParams {
                    meta: None,
                    message: question,
                    requested_schema: schema,
                },
            );
            let requests = rmcp::model::InputRequests::from([(
                CONFIRM_INPUT.to_owned(),
                rmcp::model::InputRequest::Elicitation(ask),
            )]);
            tracing::info!(decision = %id, "warden mcp: held call put to the user (input required)");
            return Some(Some(ServerResult::InputRequiredResult(
                rmcp::model::InputRequiredResult::new(
                    Some(requests),
                    Some(format!("{CONFIRM_STATE}{id}")),
                ),
            )));
        }
        let wait = if self.hold_timeout.is_zero() {
            Duration::from_secs(120)
        } else {
            self.hold_timeout
        };
        let asked = ctx.peer.create_elicitation_with_timeout(
            rmcp::model::ElicitRequestParams::FormElicitationParams {
                meta: None,
                message: question.clone(),
                requested_schema: schema,
            },
            Some(wait),
        );
        let answer = match asked.await {
            Ok(answer) => answer,
            Err(rmcp::ServiceError::Timeout { .. }) => {
                let why = format!("the user did not answer within {} s", wait.as_secs());
                return Some(Some(match self.rt.expire_approval(id, &why) {
                    Ok(a) => not_approved(record, &a),
                    Err(e) => refusal(
                        format!("Warden could not record that {why}: {e}"),
                        Some(decision_meta(record)),
                    ),
                }));
            }
            Err(e) => {
                tracing::warn!(decision = %id, "warden mcp: asking the user failed ({e}); the call goes to the approvals queue");
                return None;
            }
        };
        let given = serde_json::json!({"action": answer.action, "content": answer.content});
        let yes = said_yes(&given);
        match self.rt.resolve_approval_by_user(id, yes, &question, given) {
            Ok(a) if yes && a.status == warden_store::ApprovalStatus::Approved => {
                tracing::info!(decision = %id, "warden mcp: the user confirmed the held call; forwarding it");
                Some(None)
            }
            Ok(a) => Some(Some(not_approved(record, &a))),
            // A person may have decided it while the user was asked: their decision stands.
            Err(e) => Some(match self.rt.approval(id) {
                Ok(a) if a.status == warden_store::ApprovalStatus::Approved => None,
                Ok(a) if a.status != warden_store::ApprovalStatus::Pending => {
                    Some(not_approved(record, &a))
                }
                _ => Some(refusal(
                    format!(
                        "Warden held this call to `{}` (decision {id}) and asked the user, but \
                         could not record the answer, so it was refused and not forwarded: {e}",
                        record.tool
                    ),
                    Some(decision_meta(record)),
                )),
            }),
        }
    }

    /// The user's answer, brought back with the retry of a held call (2026-07-28): the call
    /// must be the held one of this session, still pending, with the same tool and arguments.
    /// Their answer resolves it; `Ok(call id)` when they confirmed it (forward it), else the
    /// refusal to give.
    fn confirmed(
        &self,
        tool: &str,
        arguments: Option<&JsonObject>,
        confirmation: Confirmation,
    ) -> Result<String, Box<ServerResult>> {
        let refuse = |why: String| {
            Box::new(refusal(
                format!("Warden did not carry out this call to `{tool}`: {why}"),
                None,
            ))
        };
        // Only where the user may confirm: elsewhere an approver decides, and a client that
        // sends an answer of its own releases nothing.
        if !self.confirm_user {
            return Err(refuse(
                "this session's held calls are released by an approver, not by an answer from \
                 the client"
                    .into(),
            ));
        }
        let id = confirmation.state.trim_start_matches(CONFIRM_STATE);
        let held = self
            .rt
            .approval(id)
            .map_err(|e| refuse(format!("the confirmation it answers is unknown ({e})")))?;
        let args =
            serde_json::to_value(arguments.cloned().unwrap_or_default()).unwrap_or(Value::Null);
        if held.session != self.session || held.tool != tool || held.args != args {
            return Err(refuse(format!(
                "the confirmation it answers is for another call (decision {id})"
            )));
        }
        if held.status != warden_store::ApprovalStatus::Pending {
            return Err(refuse(format!(
                "the held call {id} was already {}",
                held.status.as_str()
            )));
        }
        let reasons: Vec<String> = held
            .reasons
            .as_array()
            .map(|rs| {
                rs.iter()
                    .filter_map(|r| r["message"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let reasons: Vec<&str> = reasons.iter().map(String::as_str).collect();
        let question = question_for(tool, &args, &reasons);
        let given = confirmation
            .responses
            .get(CONFIRM_INPUT)
            .cloned()
            .unwrap_or(Value::Null);
        let yes = said_yes(&given);
        match self.rt.resolve_approval_by_user(id, yes, &question, given) {
            Ok(a) if yes && a.status == warden_store::ApprovalStatus::Approved => {
                tracing::info!(decision = %id, "warden mcp: the user confirmed the held call; forwarding it");
                Ok(held.id)
            }
            Ok(a) => Err(refuse(format!(
                "it was held (decision {id}) and {} did not confirm it. Do not retry it; tell \
                 the user",
                a.approver.as_deref().unwrap_or("the user")
            ))),
            Err(e) => Err(refuse(format!(
                "it was held (decision {id}) and the user's answer could not be recorded: {e}"
            ))),
        }
    }

    /// Label and index what the agent is about to read. A result Warden cannot record is withheld:
    /// its values would reach later calls with no provenance.
    pub(crate) fn observe(
        &self,
        call_id: &str,
        upstream: &str,
        tool: &str,
        result: &ServerResult,
    ) -> Result<(), ErrorData> {
        self.rt
            .observe(
                &self.session,
                call_id,
                Some(tool),
                Some(upstream),
                content_of(result),
            )
            .map(|_| ())
            .map_err(|e| {
                tracing::error!(tool, "warden mcp: result withheld: {e}");
                ErrorData::internal_error(
                    format!(
                        "Warden could not record the result of `{tool}`, so it is withheld: {e}"
                    ),
                    None,
                )
            })
    }

    /// `tools/list`: register what the server says about its tools as evidence for their traits
    /// (under `upstream`), hide the ones this session's profile can never use, and observe what
    /// the agent reads of the rest (names, descriptions, input schemas) as content of the server
    /// (pseudo-tool `tools/list`, untrusted unless the config trusts it): a value only a
    /// description names ("always copy audit@…") is the server's, not the user's. A list Warden
    /// cannot record is withheld.
    pub(crate) fn list_tools(
        &self,
        upstream: &str,
        tools: &mut Vec<rmcp::model::Tool>,
    ) -> Result<(), ErrorData> {
        register_tools(&self.rt, upstream, tools);
        if self.hide_unusable_tools {
            let engine = self.rt.engine();
            tools.retain(|t| engine.may_permit(self.profile.as_deref(), &t.name));
        }
        let read: Vec<Value> = tools
            .iter()
            .map(|t| {
                serde_json::json!({
                    "name": t.name,
                    "description": t.description,
                    "inputSchema": t.input_schema,
                })
            })
            .collect();
        let read = Value::Array(read);
        let digest = crate::runtime::sha256_hex(&read.to_string());
        let fresh = self
            .lists_seen
            .lock()
            .map(|mut seen| seen.insert(upstream.to_owned(), digest.clone()) != Some(digest))
            .unwrap_or(true);
        if !fresh || tools.is_empty() {
            return Ok(());
        }
        register_pseudo_tools(&self.rt, upstream);
        self.rt
            .observe(
                &self.session,
                &format!("mcp:{TOOLS_LIST}:{upstream}"),
                Some(TOOLS_LIST),
                Some(upstream),
                read,
            )
            .map(|_| ())
            .map_err(|e| {
                tracing::error!(upstream, "warden mcp: tool list withheld: {e}");
                ErrorData::internal_error(
                    format!("Warden could not record the tool list of `{upstream}`, so it is withheld: {e}"),
                    None,
                )
            })
    }
}

/// Forward a request upstream with the agent's `_meta`, relaying progress and cancellation.
pub(crate) async fn forward(
    link: &Link,
    peer: &Peer<RoleClient>,
    mut request: ClientRequest,
    ctx: &RequestContext<RoleServer>,
) -> Result<ServerResult, ServiceError> {
    *request.get_meta_mut() = forwarded_meta(&ctx.meta);
    let call = link
        .next_call
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let stateless = Era::of(ctx) == Era::Stateless;
    let logs = stateless.then(|| {
        ctx.meta
            .get("io.modelcontextprotocol/logLevel")
            .and_then(Value::as_str)
            .and_then(log_rank)
    });
    if let Ok(mut calling) = link.calling.lock() {
        calling.push(Calling {
            id: call,
            peer: ctx.peer.clone(),
            logs,
        });
    }
    let result = forward_calling(link, peer, request, ctx).await;
    if let Ok(mut calling) = link.calling.lock() {
        calling.retain(|c| c.id != call);
    }
    result
}

async fn forward_calling(
    link: &Link,
    peer: &Peer<RoleClient>,
    request: ClientRequest,
    ctx: &RequestContext<RoleServer>,
) -> Result<ServerResult, ServiceError> {
    let mut options = PeerRequestOptions::no_options();
    options.meta = hop_meta(peer, ctx);
    let handle = peer.send_cancellable_request(request, options).await?;
    let mut early = std::collections::VecDeque::new();
    let agent_token = ctx.meta.get_progress_token();
    if let (Some(agent_token), Ok(mut m)) = (&agent_token, link.progress.lock()) {
        let token = &handle.progress_token;
        // What the server reported before this call knew its token.
        let (mine, others) = std::mem::take(&mut m.unclaimed)
            .into_iter()
            .partition(|(p, _)| &p.params.progress_token == token);
        m.unclaimed = others;
        early = mine;
        m.askers
            .insert(token.clone(), (ctx.peer.clone(), agent_token.clone()));
    }
    if let Some(agent_token) = &agent_token {
        for (progress, meta) in early {
            relay_progress(&ctx.peer, progress, agent_token.clone(), meta).await;
        }
    }
    let relayed = agent_token.map(|_| handle.progress_token.clone());
    let result = await_or_cancel(handle, ctx.ct.cancelled()).await;
    link.settle().await;
    if let (Some(token), Ok(mut m)) = (relayed, link.progress.lock()) {
        m.askers.remove(&token);
    }
    result.map(|mut result| {
        mark_complete(&mut result);
        result
    })
}

/// Passes the server's progress on to the client that asked for it, under that client's own
/// progress token.
async fn relay_progress(
    to: &Peer<RoleServer>,
    mut progress: rmcp::model::ProgressNotification,
    agent_token: ProgressToken,
    meta: rmcp::model::NotificationMetaObject,
) {
    progress.params.progress_token = agent_token;
    let mut progress = ServerNotification::ProgressNotification(progress);
    *progress.get_meta_mut() = meta;
    if let Err(e) = to.send_notification(progress).await {
        tracing::debug!("warden mcp: could not relay progress to the client: {e}");
    }
}

/// A server of an earlier protocol era sends results without `resultType`, which 2026-07-28
/// requires on every result (strict clients reject a tool result without it). Name the ones
/// that lack it `"complete"`, as that era's clients must read an absent one; rmcp takes the
/// field off again for a client of an earlier era.
fn mark_complete(result: &mut ServerResult) {
    let result_type = match result {
        ServerResult::CompleteResult(r) => &mut r.result_type,
        ServerResult::GetPromptResult(r) => &mut r.result_type,
        ServerResult::ListPromptsResult(r) => &mut r.result_type,
        ServerResult::ListResourcesResult(r) => &mut r.result_type,
        ServerResult::ListResourceTemplatesResult(r) => &mut r.result_type,
        ServerResult::ReadResourceResult(r) => &mut r.result_type,
        ServerResult::ListToolsResult(r) => &mut r.result_type,
        ServerResult::CallToolResult(r) => &mut r.result_type,
        _ => return,
    };
    result_type.get_or_insert(rmcp::model::ResultType::COMPLETE);
}

/// Record what a server says about its tools (annotations, schemas) as evidence for their traits.
pub(crate) fn register_tools(rt: &Runtime, upstream: &str, tools: &[rmcp::model::Tool]) {
    let specs: Vec<ToolSpec> = tools
        .iter()
        .filter_map(|t| {
            serde_json::to_value(t)
                .and_then(serde_json::from_value)
                .ok()
        })
        .collect();
    rt.register_tools(upstream, &specs);
}

/// Before deciding a call of a tool Warden has not seen listed (an agent may call without
/// `tools/list`), ask the server for its tools, so the decision uses what the server says about
/// them rather than a guess from the name. A server that cannot list them leaves the guess.
pub(crate) async fn learn_tools(rt: &Runtime, upstream: &str, peer: &Peer<RoleClient>, tool: &str) {
    if rt.knows_tool(upstream, tool) {
        return;
    }
    match peer.list_all_tools().await {
        Ok(tools) => register_tools(rt, upstream, &tools),
        Err(e) => tracing::warn!(
            upstream,
            "warden mcp: could not list tools before `{tool}`: {e}"
        ),
    }
}

/// The server-facing MCP client.
pub(crate) struct UpstreamClient {
    pub(crate) link: Arc<Link>,
    pub(crate) info: ClientConfig,
}

/// The most one message from a child-process upstream may hold (rmcp's own limit per line,
/// past which it would drop the message without a word).
const MAX_MESSAGE: usize = rmcp::transport::async_rw::DEFAULT_MAX_LINE_LENGTH;

/// A started server's stdio as an rmcp transport: what it says, as relayed, and its stdin.
pub(crate) type ServerPipes = (tokio::io::DuplexStream, tokio::process::ChildStdin);

/// Start an MCP server (`program` with `args`, and `env` beside Warden's environment) whose
/// stdio is its transport. Its stdout is relayed through `relay`, which cuts the connection on
/// a message over `MAX_MESSAGE`; both fronts start their stdio servers here. The server is
/// killed when the returned child is dropped.
pub(crate) fn spawn_server(
    program: &str,
    args: &[String],
    env: &std::collections::BTreeMap<String, String>,
    link: &Arc<Link>,
) -> Result<(ServerPipes, tokio::process::Child), String> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(env)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(format!("`{program}` started without stdin or stdout"));
    };
    let (reader, writer) = tokio::io::duplex(64 * 1024);
    tokio::spawn(relay(stdout, writer, link.clone()));
    Ok(((reader, stdin), child))
}

/// Copy a server's stdout to its client until a message (a line) grows past `MAX_MESSAGE`:
/// then say so on the link and end the stream, so the calls waiting on that server fail at
/// once naming the limit, rather than wait out their timeout for an answer that was dropped.
async fn relay(
    mut from: tokio::process::ChildStdout,
    mut to: tokio::io::DuplexStream,
    link: Arc<Link>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    // Bytes of the current line seen so far.
    let mut line = 0usize;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        let mut longest = line;
        for piece in chunk.split_inclusive(|b| *b == b'\n') {
            line += piece.len();
            longest = longest.max(line);
            if piece.ends_with(b"\n") {
                line = 0;
            }
        }
        if longest > MAX_MESSAGE {
            link.cut(format!(
                "it sent a message of more than {} MiB, the most Warden reads from a server in \
                 one message over stdio",
                MAX_MESSAGE / (1024 * 1024)
            ));
            return;
        }
        if to.write_all(chunk).await.is_err() {
            return;
        }
    }
}

/// How Warden opens a connection to a server, following the era its client asks in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Era {
    /// With the `initialize` handshake (clients of 2025-11-25 and earlier).
    Handshake,
    /// Without one (`server/discover`, 2026-07-28): what a server of that era answers (an
    /// `InputRequiredResult`, a result a handshake session may not carry) reaches the client
    /// that asked in that era, as the server sent it.
    Stateless,
}

impl Era {
    /// The era a request was made in.
    pub(crate) fn of(ctx: &RequestContext<RoleServer>) -> Era {
        match ctx.protocol_version() {
            Some(v) if !v.has_initialize() => Era::Stateless,
            _ => Era::Handshake,
        }
    }
}

/// Why Warden could not connect to a server.
#[derive(Clone, Debug)]
pub(crate) struct ConnectError {
    pub(crate) text: String,
    /// The server answered `server/discover` as a server of the handshake era does: it is
    /// reached with `initialize`.
    pub(crate) handshake_only: bool,
}

impl From<String> for ConnectError {
    fn from(text: String) -> ConnectError {
        ConnectError {
            text,
            handshake_only: false,
        }
    }
}

/// Connect to a started server as its MCP client, and learn what it says about itself (the
/// answer to its `initialize` or `server/discover`, as Warden passes it on). In the stateless
/// era a server that does not speak it is an error (`handshake_only`), unless `fall_back` asks
/// for a handshake on the same transport then.
pub(crate) async fn connect_upstream<T, E, A>(
    client: UpstreamClient,
    transport: T,
    era: Era,
    fall_back: bool,
) -> Result<(UpstreamService, InitializeResult), ConnectError>
where
    T: rmcp::transport::IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    use rmcp::service::{ClientInitializeError, ClientLifecycleMode};
    let lifecycle = match (era, fall_back) {
        (Era::Handshake, _) => ClientLifecycleMode::Initialize,
        (Era::Stateless, false) => ClientLifecycleMode::Discover {
            preferred_versions: vec![ProtocolVersion::LATEST],
        },
        (Era::Stateless, true) => ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::LATEST],
            legacy_version: Some(ProtocolVersion::LATEST_WITH_INITIALIZE),
        },
    };
    let transport = Arrivals {
        inner: transport.into_transport(),
        link: client.link.clone(),
    };
    let running = rmcp::service::serve_client_with_lifecycle(client, transport, lifecycle)
        .await
        .map_err(|e| ConnectError {
            handshake_only: era == Era::Stateless
                && matches!(
                    e,
                    ClientInitializeError::JsonRpcError(_)
                        | ClientInitializeError::NoCompatibleProtocolVersion { .. }
                ),
            // The causes say why (a certificate no root vouches for, a refused token).
            text: format!(
                "the MCP server behind Warden did not initialize: {}",
                crate::outbound::chain(&e)
            ),
        })?;
    let server = running
        .peer()
        .peer_info()
        .ok_or_else(|| "the MCP server sent no initialize result".to_owned())?;
    let mut initialize = InitializeResult::new(server.capabilities.clone());
    initialize.protocol_version = server.protocol_version.clone();
    initialize.server_info = server
        .server_info
        .clone()
        .unwrap_or_else(|| Implementation::new("mcp-server", "unknown"));
    initialize.instructions = server.instructions.clone();
    initialize.meta = server.meta.clone();
    Ok((running, initialize))
}

impl Gateway {
    /// Connect to the server with the agent's client info (once), and learn what to answer.
    async fn upstream(
        &self,
        info: ClientConfig,
        era: Era,
        agent: &Peer<RoleServer>,
    ) -> Result<&Upstream, ErrorData> {
        self.upstream
            .get_or_try_init(|| async {
                let _ = self.link.agent.set(agent.clone());
                let child = self
                    .child
                    .lock()
                    .ok()
                    .and_then(|mut c| c.take())
                    .ok_or_else(|| {
                        ErrorData::internal_error("the MCP server could not be reached", None)
                    })?;
                let client = UpstreamClient {
                    link: self.link.clone(),
                    info,
                };
                let (pipes, process) = child;
                // One server, one client: the client's era, or a handshake if the server
                // knows no other.
                let (running, initialize) = connect_upstream(client, pipes, era, true)
                    .await
                    .map_err(|e| ErrorData::internal_error(e.text, None))?;
                let peer = running.peer().clone();
                let name = initialize.server_info.name.clone();
                register_pseudo_tools(&self.guard.rt, &name);
                tracing::info!(
                    server = %name,
                    protocol = %initialize.protocol_version,
                    "warden mcp: connected to the MCP server"
                );
                let stop = running.cancellation_token();
                let link = self.link.clone();
                let task = tokio::spawn(async move {
                    let _ = running.waiting().await;
                    link.upstream_gone.notify_one();
                });
                Ok(Upstream {
                    peer,
                    name,
                    initialize,
                    stop: Mutex::new(Some(stop)),
                    task: tokio::sync::Mutex::new(Some(task)),
                    process: tokio::sync::Mutex::new(Some(process)),
                })
            })
            .await
    }

    /// Forward a request to the server; its own errors pass through unchanged.
    async fn forward(
        &self,
        up: &Upstream,
        request: ClientRequest,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        forward(&self.link, &up.peer, request, ctx)
            .await
            .map_err(upstream_error)
    }

    async fn handle(
        &self,
        request: ClientRequest,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        self.guard.note_instruction(&ctx.meta);
        let request = match request {
            ClientRequest::InitializeRequest(init) => {
                let mut info = init.params;
                info.meta = None;
                let up = self.upstream(info, Era::Handshake, &ctx.peer).await?;
                return Ok(ServerResult::InitializeResult(up.initialize.clone()));
            }
            ClientRequest::PingRequest(_) => return Ok(ServerResult::empty(())),
            other => other,
        };
        let up = match self.upstream.get() {
            Some(up) => up,
            // A client that skips `initialize` (2026-07-28) names itself in each request's _meta.
            None => {
                let info = ClientConfig::new(
                    ctx.client_capabilities().unwrap_or_default(),
                    ctx.client_info()
                        .unwrap_or_else(|| Implementation::new("mcp-client", "unknown")),
                )
                .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE);
                self.upstream(info, Era::of(&ctx), &ctx.peer).await?
            }
        };
        let mut result = match request {
            ClientRequest::CallToolRequest(mut call) => {
                let tool = call.params.name.to_string();
                let confirmation = take_confirmation(&mut call.params);
                learn_tools(&self.guard.rt, &up.name, &up.peer, &tool).await;
                let arguments = call.params.arguments.clone();
                let forwarded = async {
                    match forward(&self.link, &up.peer, ClientRequest::CallToolRequest(call), &ctx)
                        .await
                    {
                        Ok(r) => Ok(Forwarded::Answer(Box::new(r))),
                        Err(e) => match self.link.cut_reason() {
                            Some(why) => Ok(Forwarded::Unavailable(format!(
                                "The MCP server `{}` could not answer this call to `{tool}`: {why}, \
                                 so Warden dropped the answer and the connection. The call may \
                                 have been carried out. This session ends; the host starts Warden \
                                 and the server again.",
                                up.name
                            ))),
                            None => Err(upstream_error(e)),
                        },
                    }
                };
                self.guard
                    .call_tool(
                        &up.name,
                        &tool,
                        arguments.as_ref(),
                        confirmation,
                        &ctx,
                        forwarded,
                    )
                    .await?
            }
            ClientRequest::ListToolsRequest(_) => {
                let mut result = self.forward(up, request, &ctx).await?;
                match &mut result {
                    ServerResult::ListToolsResult(list) => {
                        self.guard.list_tools(&up.name, &mut list.tools)?
                    }
                    _ => tracing::warn!(
                        "warden mcp: tools/list answered with something else; passed as is"
                    ),
                }
                result
            }
            ClientRequest::ReadResourceRequest(_) | ClientRequest::GetPromptRequest(_) => {
                let pseudo_tool = match &request {
                    ClientRequest::ReadResourceRequest(_) => RESOURCES_READ,
                    _ => PROMPTS_GET,
                };
                let result = self.forward(up, request, &ctx).await?;
                self.guard
                    .observe(&format!("mcp:{}", ctx.id), &up.name, pseudo_tool, &result)?;
                result
            }
            other => self.forward(up, other, &ctx).await?,
        };
        if Era::of(&ctx) == Era::Handshake {
            result.strip_result_type_for_legacy_peer();
        }
        Ok(result)
    }
}

impl Service<RoleServer> for GatewayService {
    async fn handle_request(
        &self,
        request: ClientRequest,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        self.0.handle(request, ctx).await
    }

    async fn handle_notification(
        &self,
        mut notification: ClientNotification,
        ctx: NotificationContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // Cancellation is relayed by the request it cancels (with the server's own request id);
        // `initialized` was sent upstream by Warden's own handshake; the agent's progress tokens
        // mean nothing to the server.
        if matches!(
            notification,
            ClientNotification::CancelledNotification(_)
                | ClientNotification::InitializedNotification(_)
                | ClientNotification::ProgressNotification(_)
        ) {
            return Ok(());
        }
        let Some(up) = self.0.upstream.get() else {
            return Ok(());
        };
        *notification.get_meta_mut() = ctx.meta;
        if let Err(e) = up.peer.send_notification(notification).await {
            tracing::warn!("warden mcp: could not forward a notification to the server: {e}");
        }
        Ok(())
    }

    fn get_info(&self) -> InitializeResult {
        match self.0.upstream.get() {
            Some(up) => up.initialize.clone(),
            None => InitializeResult::default(),
        }
    }

    /// Once connected, speak exactly the server's version, so the agent and the server agree.
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        match self.0.upstream.get() {
            Some(up) => Cow::Owned(vec![up.initialize.protocol_version.clone()]),
            None => Cow::Borrowed(ProtocolVersion::KNOWN_VERSIONS),
        }
    }
}

impl Service<RoleClient> for UpstreamClient {
    /// The server's requests (sampling, roots, elicitation) go to the agent's host.
    async fn handle_request(
        &self,
        mut request: ServerRequest,
        ctx: RequestContext<RoleClient>,
    ) -> Result<ClientResult, ErrorData> {
        if let ServerRequest::PingRequest(_) = request {
            return Ok(ClientResult::empty(()));
        }
        let Some(agent) = self.link.addressee() else {
            return Err(ErrorData::internal_error(
                "Warden cannot tell which client this request is for: no client's call, or \
                 several clients' calls, are with this server now",
                None,
            ));
        };
        *request.get_meta_mut() = forwarded_meta(&ctx.meta);
        let handle = agent
            .send_cancellable_request(request, PeerRequestOptions::no_options())
            .await
            .map_err(upstream_error)?;
        await_or_cancel(handle, ctx.ct.cancelled())
            .await
            .map_err(upstream_error)
    }

    async fn handle_notification(
        &self,
        notification: ServerNotification,
        ctx: NotificationContext<RoleClient>,
    ) -> Result<(), ErrorData> {
        let _passed_on = ctx
            .extensions
            .get::<Arrived>()
            .map(|_| PassedOn(&self.link));
        let mut notification = match notification {
            // rmcp cancels the request it names, and that cancels the agent's side.
            ServerNotification::CancelledNotification(_) => return Ok(()),
            ServerNotification::ProgressNotification(progress) => {
                let asking = {
                    let Ok(mut m) = self.link.progress.lock() else {
                        return Ok(());
                    };
                    let asking = m.askers.get(&progress.params.progress_token).cloned();
                    if asking.is_none() {
                        // The call that sent this token may not have claimed it yet.
                        if m.unclaimed.len() >= MAX_UNCLAIMED {
                            m.unclaimed.pop_front();
                        }
                        m.unclaimed.push_back((progress, ctx.meta));
                        return Ok(());
                    }
                    asking
                };
                let Some((asker, agent_token)) = asking else {
                    return Ok(());
                };
                relay_progress(&asker, progress, agent_token, ctx.meta).await;
                return Ok(());
            }
            other => other,
        };
        // Where several agents' calls are with a shared server, its other notifications have
        // no one addressee; a log message goes only to a request that asked for it.
        let level = match &notification {
            // Deprecated in 2026-07-28 (SEP-2577), and still what earlier servers send.
            #[allow(deprecated)]
            ServerNotification::LoggingMessageNotification(log) => {
                serde_json::to_value(log.params.level).ok()
            }
            _ => None,
        };
        let Some(agent) = self
            .link
            .addressee_of(level.as_ref().and_then(Value::as_str))
        else {
            return Ok(());
        };
        *notification.get_meta_mut() = ctx.meta;
        if let Err(e) = agent.send_notification(notification).await {
            tracing::debug!("warden mcp: could not forward a notification to the client: {e}");
        }
        Ok(())
    }

    fn get_info(&self) -> ClientConfig {
        self.info.clone()
    }
}

/// Wait for the peer's answer; if our own caller cancels first, tell the peer to stop too.
async fn await_or_cancel<R: ServiceRole>(
    handle: RequestHandle<R>,
    cancelled: impl Future<Output = ()>,
) -> Result<R::PeerResp, ServiceError>
where
    R::PeerInfo: Clone,
{
    let (peer, id) = (handle.peer.clone(), handle.id.clone());
    tokio::select! {
        response = handle.await_response() => response,
        () = cancelled => {
            let reason = "cancelled by the client";
            let param = CancelledNotificationParam::new(Some(id), Some(reason.into()));
            let _ = peer.send_notification(CancelledNotification::new(param).into()).await;
            Err(ServiceError::Cancelled { reason: Some(reason.into()) })
        }
    }
}

/// The peer's own JSON-RPC error passes through unchanged; anything else is named as Warden's.
pub(crate) fn upstream_error(e: ServiceError) -> ErrorData {
    match e {
        ServiceError::McpError(e) => e,
        ServiceError::Cancelled { .. } => {
            ErrorData::internal_error("the request was cancelled", None)
        }
        other => {
            ErrorData::internal_error(format!("Warden could not reach the peer: {other}"), None)
        }
    }
}

/// The `_meta` to send on: the caller's, less its progress token (rmcp sets a fresh one per hop,
/// relayed back through `Link`) and Warden's own keys.
fn forwarded_meta(meta: &RequestMetaObject) -> RequestMetaObject {
    let mut meta = meta.clone();
    // The 2026-07-28 envelope (`io.modelcontextprotocol/protocolVersion`, client info and
    // capabilities) describes the agent's hop; Warden's connection to the server is a handshake
    // one, which such keys would misdescribe (and servers refuse).
    meta.retain(|k, _| {
        k != "progressToken"
            && !k.starts_with("io.warden/")
            && !k.starts_with("io.modelcontextprotocol/")
    });
    meta
}

/// On a stateless connection (2026-07-28), the request's own envelope keys that describe the
/// client rather than the hop: its capabilities (a server asks only for input the client can
/// give, and Warden relays what it asks) and the log level it wants. rmcp sets the protocol
/// version and Warden's client info.
fn hop_meta(
    peer: &Peer<RoleClient>,
    ctx: &RequestContext<RoleServer>,
) -> Option<RequestMetaObject> {
    let both = peer
        .peer_info()
        .is_some_and(|i| !i.protocol_version.has_initialize())
        && Era::of(ctx) == Era::Stateless;
    if !both {
        return None;
    }
    let mut meta = RequestMetaObject::default();
    for key in [
        "io.modelcontextprotocol/clientCapabilities",
        "io.modelcontextprotocol/logLevel",
    ] {
        if let Some(value) = ctx.meta.get(key) {
            meta.insert(key.to_owned(), value.clone());
        }
    }
    Some(meta)
}

/// A call Warden refused: an error result naming the decision, its verdict and every reason, so
/// the agent (and its user) know what happened and what to do.
fn refused(record: &DecisionRecord) -> ServerResult {
    let reasons: String = record
        .decision
        .reasons
        .iter()
        .map(|r| format!("\n- {}: {}", r.policy, r.message))
        .collect();
    let text = match record.decision.verdict {
        Verdict::Hold => format!(
            "Warden held this call to `{}` for a person's approval (decision {}, verdict: hold); \
             it was not carried out. Reasons:{reasons}\nTell the user what you tried to do and \
             why; do not retry it with the same values unless the user confirms them.",
            record.tool, record.decision_id
        ),
        _ => format!(
            "Warden denied this call to `{}` (decision {}, verdict: deny); it was not carried \
             out. Reasons:{reasons}\nDo not retry it as is; tell the user if the task needs it.",
            record.tool, record.decision_id
        ),
    };
    refusal(text, Some(decision_meta(record)))
}

/// The key of Warden's question among a 2026-07-28 answer's `inputRequests`.
const CONFIRM_INPUT: &str = "warden_confirm";
/// How a `requestState` Warden gave starts: what follows is the held decision's id.
const CONFIRM_STATE: &str = "warden-confirm:";

/// The user's answer to Warden's question about a held call, brought back with the retry of
/// that call (2026-07-28: `requestState` and `inputResponses`).
pub(crate) struct Confirmation {
    state: String,
    responses: rmcp::model::InputResponses,
}

/// Take Warden's own `requestState` and the answers that come with it out of a `tools/call`
/// (they are not the server's to see); `None` when the call carries none of Warden's.
pub(crate) fn take_confirmation(
    params: &mut rmcp::model::CallToolRequestParams,
) -> Option<Confirmation> {
    if !params
        .request_state
        .as_deref()
        .is_some_and(|s| s.starts_with(CONFIRM_STATE))
    {
        return None;
    }
    Some(Confirmation {
        state: params.request_state.take().unwrap_or_default(),
        responses: params.input_responses.take().unwrap_or_default(),
    })
}

/// The one-question form Warden asks: allow this call, yes or no.
fn confirm_schema() -> Result<rmcp::model::ElicitationSchema, serde_json::Error> {
    serde_json::from_value(serde_json::json!({
        "type": "object",
        "properties": {"allow": {
            "type": "boolean",
            "title": "Allow this call?",
            "description": "Yes releases this one call; no refuses it.",
        }},
        "required": ["allow"],
    }))
}

/// Whether an elicitation's answer (`{action, content}`) is a yes: accepted, with `allow: true`.
fn said_yes(answer: &Value) -> bool {
    answer["action"] == "accept" && answer["content"]["allow"] == Value::Bool(true)
}

/// The question a held call puts to the user: the call, and why Warden held it (which argument
/// came from where).
fn question_for(tool: &str, args: &Value, reasons: &[&str]) -> String {
    let args = serde_json::to_string(args).unwrap_or_default();
    let args: String = args.chars().take(600).collect();
    let reasons: String = reasons.iter().map(|r| format!("\n- {r}")).collect();
    format!(
        "Your agent wants to call `{tool}` with {args}. Warden held it because:{reasons}\nDid you \
         ask for this? Allow this one call?"
    )
}

/// A held call a person denied, or that no one approved in time.
fn not_approved(record: &DecisionRecord, approval: &Approval) -> ServerResult {
    let comment = approval
        .comment
        .as_deref()
        .map(|c| format!(": \"{c}\""))
        .unwrap_or_default();
    let text = match approval.approver.as_deref() {
        Some(approver) => format!(
            "Warden held this call to `{}` for a person's approval (decision {}), and {approver} \
             denied it{comment}. It was not carried out. Do not retry it; tell the user.",
            record.tool, record.decision_id
        ),
        None => format!(
            "Warden held this call to `{}` for a person's approval (decision {}), and the \
             approval expired ({}); it was not carried out. Tell the user what you tried to do \
             and why; do not retry it unless the user confirms it.",
            record.tool,
            record.decision_id,
            approval.comment.as_deref().unwrap_or("no decision in time")
        ),
    };
    let mut meta = decision_meta(record);
    meta["approval"] = serde_json::json!({
        "status": approval.status,
        "approver": approval.approver,
        "comment": approval.comment,
    });
    refusal(text, Some(meta))
}

fn decision_meta(record: &DecisionRecord) -> Value {
    serde_json::json!({
        "decision_id": record.decision_id,
        "verdict": record.decision.verdict,
        "reasons": record.decision.reasons,
    })
}

pub(crate) fn refusal(text: String, decision: Option<Value>) -> ServerResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
    if let Some(d) = decision {
        let mut meta = rmcp::model::MetaObject::new();
        meta.insert(META_DECISION.to_owned(), d);
        result.meta = Some(meta);
    }
    ServerResult::CallToolResult(result)
}

/// What the agent reads from a result, as the provenance index should see it: its text, or the
/// whole result when it has none (structured content only, say).
fn content_of(result: &ServerResult) -> Value {
    let json = serde_json::to_value(result).unwrap_or(Value::Null);
    let mut texts = Vec::new();
    collect_text(&json, &mut texts);
    if texts.is_empty() {
        json
    } else {
        Value::String(texts.join("\n"))
    }
}

fn collect_text<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("text", Value::String(s)) => out.push(s),
                    ("_meta", _) => {}
                    _ => collect_text(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_text(v, out)),
        _ => {}
    }
}

/// `resources/read`, `prompts/get` and the tool list are observed as results of these
/// pseudo-tools: reads from outside the trust boundary unless the config says otherwise
/// (`[tools."resources/read"]`, `[tools."tools/list"]`).
pub(crate) fn register_pseudo_tools(rt: &Runtime, upstream: &str) {
    if !rt.knows_tool(upstream, TOOLS_LIST) {
        rt.register_builtin_tools(upstream, &pseudo_tools());
    }
}

fn pseudo_tools() -> Vec<ToolSpec> {
    let hints = Annotations {
        read_only_hint: Some(true),
        destructive_hint: Some(false),
        open_world_hint: Some(true),
    };
    [
        (RESOURCES_READ, "Read a resource the MCP server exposes"),
        (PROMPTS_GET, "Get a prompt template the MCP server exposes"),
        (TOOLS_LIST, "List the tools the MCP server exposes"),
    ]
    .into_iter()
    .map(|(name, description)| ToolSpec {
        name: name.to_owned(),
        description: description.to_owned(),
        input_schema: serde_json::json!({"type": "object", "properties": {}}),
        annotations: Some(hints.clone()),
    })
    .collect()
}
