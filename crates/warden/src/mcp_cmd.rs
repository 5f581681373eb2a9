//! `warden mcp`: run an MCP server behind Warden over stdio, in its place in an agent's MCP
//! configuration. Stdout is the protocol; everything Warden says goes to stderr.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use warden_gateway::mcp::{run_stdio, StdioOptions};
use warden_gateway::runtime::OpenRequest;
use warden_gateway::Config;
use warden_model::Params;

#[derive(clap::Args)]
pub struct McpArgs {
    /// Task profile of the session: tools it can never use are hidden from tools/list, and
    /// denied if called anyway.
    #[arg(long)]
    profile: Option<String>,
    /// On whose behalf the agent acts (default: $USER, else "user").
    #[arg(long)]
    principal: Option<String>,
    /// The agent's id.
    #[arg(long, default_value = "mcp-agent")]
    agent: String,
    /// The user's instruction for this session: trusted; values in it may reach sensitive
    /// arguments.
    #[arg(long, default_value = "")]
    instruction: String,
    /// A task parameter, KEY=VALUE (repeat for several).
    #[arg(long = "task", value_name = "KEY=VALUE", value_parser = task_param)]
    task: Vec<(String, String)>,
    /// Where the instruction came from.
    #[arg(long, default_value = "mcp")]
    channel: String,
    /// List every tool, even those the profile can never use.
    #[arg(long)]
    show_all_tools: bool,
    /// How long a held call waits for a person's approval (`warden approvals approve ID`), in
    /// seconds; 0 refuses held calls at once.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    hold_timeout: u64,
    /// Directory for state (overrides server.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The MCP server's command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "SERVER COMMAND")]
    command: Vec<String>,
}

fn task_param(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

pub fn run(mut config: Config, args: McpArgs) -> Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,warden=info,warden_gateway=info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    if let Some(d) = args.data_dir {
        // A directory given on the command line is relative to where the command runs.
        config.server.data_dir = std::env::current_dir()
            .context("reading the current directory")?
            .join(d);
    }
    let principal = args
        .principal
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "user".to_owned());
    let task: Params = args
        .task
        .into_iter()
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    let opts = StdioOptions {
        command: args.command,
        session: OpenRequest {
            principal,
            agent: args.agent,
            profile: args.profile,
            task,
            instruction: args.instruction,
            channel: args.channel,
        },
        hide_unusable_tools: !args.show_all_tools,
        hold_timeout: std::time::Duration::from_secs(args.hold_timeout),
    };
    let rt = warden_gateway::runtime(config).context("starting Warden")?;
    // One agent and one server: every hop of a call (agent → decision → server → result → agent)
    // runs on one thread, with no hand-off between threads. The decision and result records are
    // synchronous and ordered by the session anyway, so more threads would only add wake-ups.
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let telemetry = rt.telemetry().cloned();
    let ran = tokio.block_on(run_stdio(rt, opts));
    if let Some(t) = telemetry {
        t.shutdown();
    }
    ran?;
    Ok(ExitCode::SUCCESS)
}
