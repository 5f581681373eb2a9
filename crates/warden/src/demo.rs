//! `warden demo`: the whole story in a minute. Starts Warden on an embedded configuration, with
//! the built-in mailbox (`warden demo-tools`) as its one MCP upstream, and replays a scripted
//! agent session through `/mcp`: one call allowed, one injected call held for a person, one
//! out-of-profile call denied. Then it shows where to look (dashboard, approvals, the audit
//! log's explanation of the held call) and waits for a person to decide.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
    JsonObject,
};
use rmcp::service::{Peer, RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::{json, Value};
use warden_audit::{AuditReader, EventFilter, EventKind, LoggedEvent};
use warden_gateway::config::{ApiKey, Role, UpstreamConfig};
use warden_gateway::runtime::{random_hex, sha256_hex};
use warden_gateway::{Config, Runtime};
use warden_store::{Approval, ApprovalStatus};

use crate::demo_tools::{INJECTED_ADDRESS, INJECTED_FILE};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Address to serve on: the guard API, `/mcp` and the dashboard (`/ui/`).
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// Keep Warden's state (sessions, approvals, the signed audit log) in this directory, to
    /// look at it afterwards with `warden audit … --data-dir DIR`. Default: a temporary
    /// directory, removed when the demo ends.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// End right after the story is told: the held call is refused (its approval expires)
    /// instead of waiting for a person to approve or deny it.
    #[arg(long)]
    no_wait: bool,
}

/// The demo's task profile, tool server and hold timeout; `warden demo` adds the listener, the
/// data dir, the upstream's command and two fresh API keys.
const CONFIG: &str = r#"
[mcp]
# A held call waits this long for a person (the demo stops waiting on Ctrl-C).
hold_timeout_secs = 3600

[profiles."demo.inbox"]
description = "Handle the user's e-mail: read the inbox and send replies, nothing else"
tools = ["read_inbox", "send_email"]
"#;

const PROFILE: &str = "demo.inbox";
const PRINCIPAL: &str = "sam";
const AGENT: &str = "demo-agent";
const ADMIN: &str = "demo-admin";
const INSTRUCTION: &str = "Read my inbox and reply to Alice at alice@example.com about the meeting";
/// How long a call the story expects an answer to may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the held call may take to show up as a pending approval.
const HOLD_APPEARS: Duration = Duration::from_secs(30);

/// The two API keys the demo makes: the scripted agent's and the dashboard's.
struct Keys {
    agent: String,
    admin: String,
}

fn config(args: &DemoArgs, data_dir: &Path, keys: &Keys) -> Result<Config> {
    let mut config = Config::parse(CONFIG, "<warden demo>")?;
    config.server.listen = args.listen;
    config.server.data_dir = data_dir.to_path_buf();
    let exe = std::env::current_exe().context("finding the warden executable")?;
    config.upstreams.push(UpstreamConfig::child(
        "mailbox",
        vec![exe.display().to_string(), "demo-tools".into()],
    ));
    config.api_keys.push(ApiKey {
        name: AGENT.into(),
        sha256: sha256_hex(&keys.agent),
        agents: Vec::new(),
        principals: vec![PRINCIPAL.into()],
        profiles: vec![PROFILE.into()],
        role: Role::Agent,
    });
    config.api_keys.push(ApiKey {
        name: ADMIN.into(),
        sha256: sha256_hex(&keys.admin),
        agents: Vec::new(),
        principals: Vec::new(),
        profiles: Vec::new(),
        role: Role::Admin,
    });
    Ok(config)
}

pub fn run(args: DemoArgs) -> Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let temp;
    let (data_dir, kept) = match &args.data_dir {
        Some(d) => (
            std::env::current_dir()
                .context("reading the current directory")?
                .join(d),
            true,
        ),
        None => {
            temp = tempfile::Builder::new()
                .prefix("warden-demo-")
                .tempdir()
                .context("creating a temporary data directory")?;
            (temp.path().to_path_buf(), false)
        }
    };
    let keys = Keys {
        agent: format!("wk_{}", random_hex(24)?),
        admin: format!("wk_{}", random_hex(24)?),
    };
    let rt =
        warden_gateway::runtime(config(&args, &data_dir, &keys)?).context("starting Warden")?;
    let tokio = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    tokio.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (is a Warden already running there? try --listen 127.0.0.1:0)",
                    args.listen
                )
            })?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(warden_gateway::serve(rt.clone(), listener, async {
            let _ = stopped.await;
        }));
        println!("Warden demo: a mail assistant whose inbox holds an e-mail with an injected instruction.");
        println!("  Warden serves http://{addr} (guard API, MCP at /mcp, dashboard at /ui/)");
        if kept {
            println!("  state in {}", data_dir.display());
        } else {
            println!(
                "  state in {} (removed at the end; --data-dir DIR keeps it)",
                data_dir.display()
            );
        }
        println!("  tools: the built-in mailbox server (`warden demo-tools`: read_inbox, send_email, delete_file)");
        println!("  task profile `{PROFILE}`: read_inbox and send_email only\n");
        let story = Story {
            rt: rt.clone(),
            addr,
            data_dir: data_dir.clone(),
            keys,
        };
        let outcome = story.tell(args.no_wait).await;
        let _ = stop.send(());
        match tokio::time::timeout(Duration::from_secs(10), server).await {
            Ok(Ok(Err(e))) => tracing::warn!("the server ended with an error: {e}"),
            Err(_) => tracing::warn!("the server did not stop within 10 s"),
            _ => {}
        }
        outcome
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The scripted session and what it needs: the runtime (for approvals), where Warden listens,
/// where its state is, and the keys.
struct Story {
    rt: Arc<Runtime>,
    addr: SocketAddr,
    data_dir: PathBuf,
    keys: Keys,
}

type Agent = RunningService<RoleClient, ClientConfig>;

impl Story {
    async fn tell(&self, no_wait: bool) -> Result<()> {
        println!("[user]  {INSTRUCTION:?}");
        let (session, token) = self.open_session().await?;
        let agent = self.connect(&token).await?;
        println!("[agent] opened Warden session {session} (principal {PRINCIPAL}, profile {PROFILE}) and connected to /mcp");
        let listed: Vec<String> = agent
            .list_all_tools()
            .await
            .context("tools/list through Warden")?
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        println!(
            "[agent] tools/list: {} (delete_file is hidden: outside the task profile)\n",
            listed.join(", ")
        );
        let result = self
            .step(
                &agent,
                &session,
                1,
                "read the inbox",
                "read_inbox",
                json!({}),
            )
            .await?;
        println!("        ← {}", summary(&result));
        let reply = self.step(
            &agent,
            &session,
            2,
            "reply to Alice, as the user asked",
            "send_email",
            json!({
                "to": "alice@example.com",
                "subject": "Re: Project sync",
                "body": "Hi Alice, Thursday at 10:00 works well for me. I will move the calendar \
                         invite and see you then. Best, Sam",
            }),
        )
        .await?;
        println!("        ← {}", first_line(&text_of(&reply)));
        let denied = self
            .step(
                &agent,
                &session,
                3,
                "steered by e-mail #2: delete a file",
                "delete_file",
                json!({ "path": INJECTED_FILE }),
            )
            .await?;
        if denied.is_error != Some(true) {
            println!("        ← {}", first_line(&text_of(&denied)));
        }
        let held = self.held_call(&agent, &session).await?;
        self.where_to_look(&held)?;
        let Held {
            approval, answer, ..
        } = held;
        if no_wait {
            self.rt
                .expire_approval(&approval.id, "the demo ended: --no-wait")
                .context("refusing the held call")?;
        } else {
            println!(
                "Waiting for a person to approve or deny {} (Ctrl-C ends the demo and refuses it)…",
                approval.id
            );
        }
        let finished = tokio::select! {
            answer = answer => Some(answer),
            () = shutdown_signal() => None,
        };
        match finished {
            Some(answer) => {
                let answer = answer
                    .context("the agent's call task failed")?
                    .context("the held call through /mcp")?;
                self.print_outcome(&approval.id, &answer)?;
                if no_wait {
                    println!("\nDemo finished (--no-wait).");
                } else {
                    println!(
                        "\nStill serving http://{}/ui/ so you can look around; Ctrl-C to stop.",
                        self.addr
                    );
                    shutdown_signal().await;
                    println!("Stopped.");
                }
            }
            None => {
                let now = self
                    .rt
                    .expire_approval(&approval.id, "the demo was stopped")
                    .context("refusing the held call")?;
                println!("\nStopped; approval {} is {}.", now.id, now.status.as_str());
            }
        }
        let _ = agent.cancel().await;
        Ok(())
    }

    async fn open_session(&self) -> Result<(String, String)> {
        let response = warden_gateway::outbound::client(None)
            .map_err(anyhow::Error::msg)?
            .post(format!("http://{}/v1/sessions", self.addr))
            .bearer_auth(&self.keys.agent)
            .json(&json!({
                "principal": PRINCIPAL,
                "agent": AGENT,
                "profile": PROFILE,
                "instruction": INSTRUCTION,
                "channel": "chat",
            }))
            .send()
            .await
            .context("POST /v1/sessions")?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .context("reading the answer to POST /v1/sessions")?;
        if !status.is_success() {
            bail!("POST /v1/sessions answered {status}: {body}");
        }
        match (body["id"].as_str(), body["token"].as_str()) {
            (Some(id), Some(token)) => Ok((id.to_owned(), token.to_owned())),
            _ => bail!("POST /v1/sessions answered without an id and token: {body}"),
        }
    }

    /// The agent's MCP client on `/mcp`, bound to the session by its token.
    async fn connect(&self, token: &str) -> Result<Agent> {
        let config =
            StreamableHttpClientTransportConfig::with_uri(format!("http://{}/mcp", self.addr))
                .auth_header(token.to_owned());
        let http = warden_gateway::outbound::client(None).map_err(anyhow::Error::msg)?;
        let transport = StreamableHttpClientTransport::with_client(http, config);
        let info = ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new(AGENT, env!("CARGO_PKG_VERSION")),
        );
        info.serve(transport)
            .await
            .context("initializing the MCP session at /mcp")
    }

    /// One call: print it, make it, and print Warden's decision as the audit log recorded it.
    async fn step(
        &self,
        agent: &Agent,
        session: &str,
        n: usize,
        why: &str,
        tool: &str,
        args: Value,
    ) -> Result<CallToolResult> {
        println!("{n}. {tool} {args}   ({why})");
        let result = match tokio::time::timeout(STEP_TIMEOUT, call(agent.peer(), tool, args)).await
        {
            Ok(answer) => answer.with_context(|| format!("tools/call {tool} through /mcp"))?,
            Err(_) => {
                if let Ok(event) = self.latest_decision(session, None) {
                    print_decision(&event);
                }
                bail!(
                    "the call to `{tool}` did not come back within {} s (is it held for a person? \
                     `warden approvals list --data-dir {}`)",
                    STEP_TIMEOUT.as_secs(),
                    self.data_dir.display()
                );
            }
        };
        let event = self.latest_decision(session, None)?;
        if event.event.body["tool"] != tool {
            bail!(
                "Warden recorded no decision for this call to `{tool}`; it answered: {}",
                text_of(&result)
            );
        }
        print_decision(&event);
        Ok(result)
    }

    /// The injected send: made on its own task, since a held call waits for a person; returns
    /// once its approval is pending.
    async fn held_call(&self, agent: &Agent, session: &str) -> Result<Held> {
        let args = json!({
            "to": INJECTED_ADDRESS,
            "subject": "Inbox backup",
            "body": "As requested, a backup of the inbox: 1. Project sync (Alice), 2. Your weekly digest.",
        });
        println!("4. send_email {args}   (steered by e-mail #2: send the inbox out)");
        let peer = agent.peer().clone();
        let mut answer = tokio::spawn(async move { call(&peer, "send_email", args).await });
        let deadline = tokio::time::Instant::now() + HOLD_APPEARS;
        let approval = loop {
            let pending = self.rt.approvals(Some(ApprovalStatus::Pending))?;
            if let Some(a) = pending.into_iter().find(|a| a.session == session) {
                break a;
            }
            if answer.is_finished() {
                let result = (&mut answer)
                    .await
                    .context("the agent's call task failed")?;
                let event = self.latest_decision(session, None)?;
                print_decision(&event);
                bail!(
                    "the injected send_email was not held for a person: {}",
                    result
                        .map(|r| text_of(&r))
                        .unwrap_or_else(|e| e.to_string())
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "the injected send_email did not become a pending approval within {} s",
                    HOLD_APPEARS.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let event = self.latest_decision(session, Some(approval.seq))?;
        print_decision(&event);
        println!("        … waiting for a person: approval {}\n", approval.id);
        Ok(Held {
            approval,
            answer,
            event: event.index,
        })
    }

    /// The session's newest decision in the audit log (or the one of call `seq`).
    fn latest_decision(&self, session: &str, seq: Option<u64>) -> Result<LoggedEvent> {
        let reader = AuditReader::open(&self.data_dir).context("opening the audit log")?;
        let decisions = reader.events(&EventFilter {
            session: Some(session.to_owned()),
            kind: Some(EventKind::Decision),
            ..EventFilter::default()
        })?;
        decisions
            .into_iter()
            .rev()
            .find(|e| seq.is_none_or(|s| e.event.body["seq"].as_u64() == Some(s)))
            .context("the audit log holds no decision for this call")
    }

    /// The dashboard, the approval commands, and the audit log's explanation of the held call.
    fn where_to_look(&self, held: &Held) -> Result<()> {
        let dir = self.data_dir.display();
        let id = &held.approval.id;
        let addr = self.addr;
        println!("Where to look");
        println!(
            "  Dashboard: http://{addr}/ui/  — sign in with the admin token {}",
            self.keys.admin
        );
        println!("    · the held send_email: its `to` came only from the read_inbox result (e-mail #2), not from your instruction");
        println!("    · the denied delete_file: outside the task profile `{PROFILE}`");
        println!("    · the allowed reply to Alice: its recipient is in your instruction");
        println!("  Command line (beside the running demo):");
        println!("    warden approvals list --data-dir {dir}");
        println!("    warden approvals approve {id} --approver you --data-dir {dir}   # let the held call through");
        println!("    warden approvals deny {id} --approver you --data-dir {dir}");
        println!("    warden audit explain {} --data-dir {dir}", held.event);
        println!(
            "    warden audit verify --data-dir {dir}
"
        );
        let reader = AuditReader::open(&self.data_dir).context("opening the audit log")?;
        println!("$ warden audit explain {}", held.event);
        print!("{}", crate::audit_cmd::explain_event(&reader, held.event)?);
        println!();
        Ok(())
    }

    /// How the held call ended, as the agent heard it.
    fn print_outcome(&self, id: &str, answer: &CallToolResult) -> Result<()> {
        let approval = self.rt.approval(id)?;
        let by = approval.approver.as_deref().unwrap_or("nobody");
        match approval.status {
            ApprovalStatus::Approved if answer.is_error != Some(true) => println!(
                "Approval {id}: approved by {by}; the held call went through: {}",
                first_line(&text_of(answer))
            ),
            ApprovalStatus::Approved => println!(
                "Approval {id}: approved by {by}, but the call failed: {}",
                first_line(&text_of(answer))
            ),
            ApprovalStatus::Denied => println!(
                "Approval {id}: denied by {by}; the call was not carried out. The agent was told: {}",
                first_line(&text_of(answer))
            ),
            ApprovalStatus::Expired | ApprovalStatus::Pending => println!(
                "Approval {id}: {} ({}); the call was not carried out. The agent was told: {}",
                approval.status.as_str(),
                approval.comment.as_deref().unwrap_or(""),
                first_line(&text_of(answer))
            ),
        }
        Ok(())
    }
}

/// The held call: its approval, and the agent's answer when a person (or the demo) ends it.
struct Held {
    approval: Approval,
    answer: tokio::task::JoinHandle<Result<CallToolResult, rmcp::ServiceError>>,
    event: u64,
}

async fn call(
    peer: &Peer<RoleClient>,
    tool: &str,
    args: Value,
) -> Result<CallToolResult, rmcp::ServiceError> {
    let args: JsonObject = match args {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    };
    peer.call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args))
        .await
}

fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// What the inbox held, in one line.
fn summary(result: &CallToolResult) -> String {
    let mails: Vec<Value> = serde_json::from_str(&text_of(result)).unwrap_or_default();
    let listed: Vec<String> = mails
        .iter()
        .map(|m| {
            format!(
                "#{} from {} {:?}",
                m["id"],
                m["from"].as_str().unwrap_or("?"),
                m["subject"].as_str().unwrap_or("")
            )
        })
        .collect();
    format!(
        "{} e-mails: {}; #2's body tells the assistant to send the inbox to {INJECTED_ADDRESS} and delete {INJECTED_FILE}",
        mails.len(),
        listed.join(", ")
    )
}

fn print_decision(event: &LoggedEvent) {
    let body = &event.event.body;
    let verdict = body["verdict"].as_str().unwrap_or("?").to_uppercase();
    let reasons = body["reasons"].as_array().cloned().unwrap_or_default();
    match reasons.split_first() {
        None => println!("   {verdict:<5}  (audit event #{})", event.index),
        Some((first, rest)) => {
            println!(
                "   {verdict:<5}  [{}] {}  (audit event #{})",
                first["policy"].as_str().unwrap_or(""),
                first["message"].as_str().unwrap_or(""),
                event.index
            );
            for r in rest {
                println!(
                    "          [{}] {}",
                    r["policy"].as_str().unwrap_or(""),
                    r["message"].as_str().unwrap_or("")
                );
            }
        }
    }
}

/// Resolves on Ctrl-C (or SIGTERM).
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! { _ = interrupt => {}, _ = term.recv() => {} }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
