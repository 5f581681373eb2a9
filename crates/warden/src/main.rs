//! The `warden` command: serve the gateway, check and test policies, decide one call by hand,
//! explain tool traits.

mod approvals_cmd;
mod audit_cmd;
mod cases;
mod demo;
mod demo_tools;
mod detect_cmd;
mod mcp_cmd;
mod pins_cmd;
mod replay;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use clap::{Parser, Subcommand};
use warden_gateway::Config;
use warden_policy::{tools, ToolSpec};

#[derive(Parser)]
#[command(
    name = "warden",
    version,
    about = "A runtime security gateway for AI agents: decides every tool call from task-scoped \
             Cedar policy and value-level provenance.",
    after_help = "Start with `warden demo` (the whole story in a minute), then `warden serve` (no config \
                  needed) and the README's walkthrough."
)]
struct Cli {
    /// Config file (TOML). Without one, Warden runs on its embedded defaults.
    #[arg(long, short, global = true, env = "WARDEN_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// See Warden work in a minute: a scripted agent's injected call held, an out-of-profile call
    /// denied.
    ///
    /// Starts Warden with a built-in mail tool server and a scripted agent whose inbox holds an
    /// injected instruction: one call is allowed, the injected send is held for a person, an
    /// out-of-profile call is denied. Prints the dashboard URL, an admin token and the audit
    /// log's explanation of the held call, then waits for you to approve or deny it. Needs no
    /// files and no network; ignores --config.
    Demo(demo::DemoArgs),
    /// The demo's mailbox: an MCP server on stdio (`warden demo` starts it behind Warden).
    #[command(hide = true)]
    DemoTools,
    /// Serve the guard API on localhost (SQLite state under the data dir, or a fleet's PostgreSQL
    /// with [store] url; built-in baseline policy),
    /// the web dashboard at /ui/ (people sign in with viewer, approver or admin keys), and /mcp when the config declares [[upstreams]].
    Serve {
        /// Address to listen on (overrides server.listen).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Directory for state (overrides server.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Shadow mode: decide and record every call as usual, but allow them all; answers carry
        /// `shadow_verdict`, and the audit log marks the decisions `"shadow": true`.
        #[arg(long)]
        shadow: bool,
    },
    /// Check and test policies and task profiles.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Decide one call described in a JSON case file, and print the decision (for debugging).
    ///
    /// The file holds {"session": {...}, "steps": [...], "call": {"tool", "args"}}: see
    /// examples/cases/ for the format.
    Decide {
        /// The case file (JSON or TOML).
        file: PathBuf,
    },
    /// Show what Warden believes about tools, and why.
    Tools {
        #[command(subcommand)]
        command: ToolsCommand,
    },
    /// Replay recorded agent traces through the decision pipeline, and score them with labels.
    ///
    /// Traces are JSONL (gzip or plain) in the AgentDojo event format (an example:
    /// crates/warden/tests/fixtures/replay; scores as EVALUATION.md counts them). Each session is
    /// opened with the user's instruction,
    /// every tool result is observed and every tool call decided, by the same runtime as live
    /// traffic. Writes one decision per call to --out (or stdout without --labels).
    Replay {
        /// Trace files; repeat for several.
        #[arg(long, required_unless_present = "from_audit")]
        traces: Vec<PathBuf>,
        /// Instead of traces, replay Warden's own recorded sessions (from --data-dir) under this
        /// config, and list every decision that would change.
        #[arg(long, conflicts_with_all = ["traces", "labels"])]
        from_audit: bool,
        /// With --from-audit: the data directory whose sessions to replay (default: the
        /// config's server.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// With --from-audit: only sessions opened at or after this time: milliseconds since
        /// the epoch, a duration back from now (`90m`, `24h`, `7d`) or a UTC date (`2026-11-25`).
        #[arg(long)]
        since: Option<String>,
        /// Label files (ground truth) to score against; repeat for several.
        #[arg(long)]
        labels: Vec<PathBuf>,
        /// Tool specs (a list, or an object of lists keyed by suite, like tools.json): their
        /// names, descriptions and schemas are the evidence for the tools' traits.
        #[arg(long)]
        tools: Option<PathBuf>,
        /// Open every session with this task profile.
        #[arg(long)]
        profile: Option<String>,
        /// Write decisions (JSONL) here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the scores as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Read, verify and explain the tamper-evident audit log (under the data dir).
    Audit {
        /// Data directory (default: server.data_dir of the config).
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
        #[command(subcommand)]
        command: audit_cmd::AuditCommand,
    },
    /// Learn the behavioural baseline and score calls against it.
    Detect {
        #[command(subcommand)]
        command: detect_cmd::DetectCommand,
    },
    /// Run an MCP server behind Warden over stdio: put `warden mcp [OPTIONS] -- <server command>`
    /// where the server's command was in the agent's MCP configuration.
    Mcp(mcp_cmd::McpArgs),
    /// List held calls and approve or deny them (on the data dir, beside a running Warden).
    Approvals(approvals_cmd::ApprovalsArgs),
    /// Make API keys for agents.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate the config's task profiles and Cedar policies (and any extra files given);
    /// errors are reported as file:line:col.
    Check {
        /// Extra Cedar files to check with the config's.
        files: Vec<PathBuf>,
    },
    /// Run decision test cases (`*.toml` with [[case]] tables, or `*.json` with one case) from a
    /// directory; exits non-zero if any fails.
    Test { dir: PathBuf },
    /// Print the policy set in force (baseline, compiled profiles, files), or with --schema
    /// the Cedar schema every policy is checked against.
    Show {
        /// Print Warden's Cedar schema (entities, action, context) instead of the policies.
        #[arg(long)]
        schema: bool,
    },
}

#[derive(Subcommand)]
enum ToolsCommand {
    /// Explain each tool's traits (read, write, destructive, open_world), what its results are
    /// labelled, and which parameters are sensitive sinks, with the evidence for each.
    Explain {
        /// A JSON file of tool specs: a list of {name, description, inputSchema|parameters,
        /// annotations}, or an object of such lists (like AgentDojo's tools.json).
        #[arg(long)]
        specs: Option<PathBuf>,
        /// Only these tools (default: every tool known from the config and --specs).
        names: Vec<String>,
    },
    /// List the tool definitions Warden pinned (the first it saw of each tool of each upstream,
    /// or the one an operator accepted) and the changes awaiting review: a tool whose server
    /// now describes it otherwise (description, input schema, annotations) is held at every
    /// call until accepted.
    Pins {
        /// The data directory (default: the config's server.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print the pins as JSON, with the pinned and the new definitions in full.
        #[arg(long)]
        json: bool,
    },
    /// Accept the changed definition of a tool after reviewing it (`warden tools pins --json`):
    /// it becomes the pin, and the tool's calls are decided as any other's again, also in a
    /// running server.
    Accept {
        /// The upstream's name, as in `[[upstreams]]` (or `guard` for tools declared through the
        /// guard API).
        upstream: String,
        /// The tool's name as its upstream lists it.
        tool: String,
        /// Who reviewed and accepts it (recorded in the audit log as "NAME (cli)").
        #[arg(long)]
        by: String,
        /// The data directory (default: the config's server.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Print a new random API key and the [[api_keys]] entry to paste into the config.
    New {
        /// The key's name (the default agent id for its sessions).
        name: String,
    },
}

fn load_config(path: Option<&Path>) -> Result<Config> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => {
            let default = Path::new("warden.toml");
            if default.exists() {
                Ok(Config::load(default)?)
            } else {
                Ok(Config::default())
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// A command that only prints ends quietly when its reader goes away (`warden policy show |
/// head`), as Unix tools do, instead of panicking in `println!`. The long-running commands keep
/// Rust's ignored SIGPIPE: a client that hangs up must cost one connection, not the process.
fn default_sigpipe_for_printing_commands(command: &Command) {
    let serves = matches!(
        command,
        Command::Serve { .. } | Command::Mcp(_) | Command::Demo(_) | Command::DemoTools
    );
    #[cfg(unix)]
    if !serves {
        // SAFETY: called once at start, before any thread exists; SIG_DFL is a valid handler.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    #[cfg(not(unix))]
    let _ = serves;
}

fn run(cli: Cli) -> Result<ExitCode> {
    default_sigpipe_for_printing_commands(&cli.command);
    // The demo brings its own configuration.
    let command = match cli.command {
        Command::Demo(args) => return demo::run(args),
        Command::DemoTools => return demo_tools::run().map(|()| ExitCode::SUCCESS),
        other => other,
    };
    let config = load_config(cli.config.as_deref())?;
    match command {
        Command::Serve {
            listen,
            data_dir,
            shadow,
        } => {
            let mut config = config;
            config.server.shadow |= shadow;
            serve(config, listen, data_dir)
        }
        Command::Policy { command } => match command {
            PolicyCommand::Check { files } => policy_check(config, files),
            PolicyCommand::Test { dir } => policy_test(&config, &dir),
            PolicyCommand::Show { schema: true } => {
                let text = warden_policy::schema::schema_text().map_err(anyhow::Error::msg)?;
                // A closed pipe (`| head`) is the reader's choice, not an error.
                match std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes()) {
                    Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                        Err(e).context("writing the schema")?
                    }
                    _ => {}
                }
                Ok(ExitCode::SUCCESS)
            }
            PolicyCommand::Show { schema: false } => {
                for (id, text) in config.engine()?.texts() {
                    println!("// {id}\n{text}\n");
                }
                Ok(ExitCode::SUCCESS)
            }
        },
        Command::Decide { file } => {
            let case = cases::read_cases(&file)?
                .into_iter()
                .next()
                .context("the case file holds no case")?;
            let record = cases::run(&config, &case)?;
            println!("{}", serde_json::to_string_pretty(&record)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Tools {
            command: ToolsCommand::Explain { specs, names },
        } => tools_explain(&config, specs.as_deref(), &names),
        Command::Tools {
            command: ToolsCommand::Pins { data_dir, json },
        } => pins_cmd::list(
            &config,
            &data_dir.unwrap_or_else(|| config.data_dir()),
            json,
        ),
        Command::Tools {
            command:
                ToolsCommand::Accept {
                    upstream,
                    tool,
                    by,
                    data_dir,
                },
        } => pins_cmd::accept(config, data_dir, &upstream, &tool, &by),
        Command::Replay {
            from_audit: true,
            data_dir,
            since,
            json,
            ..
        } => {
            let dir = data_dir.unwrap_or_else(|| config.data_dir());
            let since_ms = since.as_deref().map(replay::parse_time).transpose()?;
            let changes = replay::shadow(&config, &dir, since_ms)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&changes)?);
            } else {
                print!("{}", replay::render_shadow(&changes));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay {
            traces,
            labels,
            tools,
            profile,
            out,
            json,
            ..
        } => replay_command(
            &config,
            &traces,
            &labels,
            tools.as_deref(),
            profile,
            out.as_deref(),
            json,
        ),
        Command::Audit { data_dir, command } => {
            let dir = match data_dir {
                Some(d) => d,
                None => config.data_dir(),
            };
            audit_cmd::run(&config, &dir, command)
        }
        Command::Detect { command } => detect_cmd::run(&config, command),
        Command::Mcp(args) => mcp_cmd::run(config, args),
        Command::Approvals(args) => approvals_cmd::run(config, args),
        Command::Demo(_) | Command::DemoTools => bail!("the demo runs without a config"),
        Command::Keys {
            command: KeysCommand::New { name },
        } => {
            let key = format!("wk_{}", warden_gateway::runtime::random_hex(24)?);
            println!("API key for `{name}` (shown once; give it to the agent):\n\n  {key}\n");
            println!("Add to the config:\n\n[[api_keys]]\nname = {name:?}\nsha256 = {:?}\nprincipals = [\"*\"]\nprofiles = [\"*\"]\nrole = \"agent\"    # or \"viewer\" (a person: signs in to the dashboard), \"approver\" (may also approve held calls) or \"admin\"",
                warden_gateway::runtime::sha256_hex(&key));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn serve(
    mut config: Config,
    listen: Option<std::net::SocketAddr>,
    data_dir: Option<PathBuf>,
) -> Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                "warden=info,warden_gateway=info,opentelemetry_sdk=warn,opentelemetry_otlp=warn"
                    .into()
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(l) = listen {
        config.server.listen = l;
    }
    if let Some(d) = data_dir {
        // A directory given on the command line is relative to where the command runs.
        config.server.data_dir = std::env::current_dir()
            .context("reading the current directory")?
            .join(d);
    }
    let rt = warden_gateway::runtime(config).context("starting Warden")?;
    let tokio = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    tokio.block_on(async move {
        let addr = rt.config().server.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (is another Warden running? try --listen 127.0.0.1:0)"))?;
        let local = listener.local_addr()?;
        let state = match warden_gateway::shared_database(rt.config()) {
            Ok(Some(db)) => format!(
                "state in {} (a fleet's shared store; keys in {})",
                db.name(),
                rt.config().data_dir().display()
            ),
            _ => format!("state in {}", rt.config().data_dir().display()),
        };
        eprintln!(
            "warden: guard API on http://{local} — {} policies (digest {}), {state}",
            rt.engine().len(),
            &rt.engine().digest[..12],
        );
        eprintln!("warden: dashboard on http://{local}/ui/ (sign in with a viewer, approver or admin key)");
        if rt.config().api_keys.is_empty() {
            eprintln!("warden: no [[api_keys]] configured: any local process may open sessions (loopback only)");
            eprintln!("warden: the dashboard is open on loopback; approvals made there are recorded as `local`");
        }
        if let Some(endpoint) = &rt.config().telemetry.endpoint {
            eprintln!("warden: sending OpenTelemetry spans to {endpoint} (OTLP/HTTP)");
        }
        let shutdown = async {
            let interrupt = tokio::signal::ctrl_c();
            #[cfg(unix)]
            {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
                match term.as_mut() {
                    Ok(t) => {
                        tokio::select! { _ = interrupt => {}, _ = t.recv() => {} }
                    }
                    Err(_) => {
                        let _ = interrupt.await;
                    }
                }
            }
            #[cfg(not(unix))]
            let _ = interrupt.await;
            eprintln!("warden: shutting down");
        };
        let served = warden_gateway::serve(rt.clone(), listener, shutdown).await;
        if let Some(t) = rt.telemetry().cloned() {
            // Sends what is batched; the exporter blocks, so off the async workers.
            let _ = tokio::task::spawn_blocking(move || t.shutdown()).await;
        }
        served?;
        let model = warden_gateway::detector_path(rt.config());
        if rt.config().detect.enabled {
            rt.save_detector(&model).with_context(|| format!("saving {}", model.display()))?;
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn replay_command(
    config: &Config,
    traces: &[PathBuf],
    labels: &[PathBuf],
    tools: Option<&Path>,
    profile: Option<String>,
    out: Option<&Path>,
    json: bool,
) -> Result<ExitCode> {
    let mut file = match out {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let stdout = std::io::stdout();
    let mut stdout_lock = stdout.lock();
    let mut decisions = Vec::new();
    let mut total = replay::Throughput {
        sessions: 0,
        decisions: 0,
        seconds: 0.0,
    };
    for t in traces {
        let sink: Option<&mut dyn std::io::Write> = match (&mut file, labels.is_empty()) {
            (Some(f), _) => Some(f),
            (None, true) => Some(&mut stdout_lock),
            (None, false) => None,
        };
        let (d, th) = replay::replay(
            config,
            replay::Options {
                traces: t,
                tools,
                profile: profile.clone(),
                out: sink,
            },
        )?;
        decisions.extend(d);
        total.sessions += th.sessions;
        total.decisions += th.decisions;
        total.seconds += th.seconds;
    }
    if let Some(mut f) = file {
        std::io::Write::flush(&mut f)?;
    }
    if labels.is_empty() {
        eprintln!(
            "{} sessions, {} decisions in {:.2} s: {:.0} sessions/s",
            total.sessions,
            total.decisions,
            total.seconds,
            total.sessions as f64 / total.seconds.max(1e-9)
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut report = replay::Report::default();
    for l in labels {
        let part = replay::score(l, &decisions)?;
        merge(&mut report, part);
    }
    report.throughput = Some(total);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", replay::render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// Add the scores of one label file to the report (label files cover disjoint sessions).
fn merge(into: &mut replay::Report, part: replay::Report) {
    fn add(a: &mut replay::Scores, b: &replay::Scores) {
        a.attacks += b.attacks;
        a.stopped += b.stopped;
        a.stopped_by_deny += b.stopped_by_deny;
        a.stopped_by_hold += b.stopped_by_hold;
        a.benign += b.benign;
        a.benign_held += b.benign_held;
        a.benign_denied += b.benign_denied;
        a.attacked_other_calls += b.attacked_other_calls;
        a.collateral += b.collateral;
    }
    add(&mut into.overall, &part.overall);
    for (k, v) in &part.by_suite {
        add(into.by_suite.entry(k.clone()).or_default(), v);
    }
    for (k, v) in part.by_reason {
        let e = into.by_reason.entry(k).or_default();
        e.attacks_stopped += v.attacks_stopped;
        e.benign_held += v.benign_held;
        e.benign_denied += v.benign_denied;
        e.collateral += v.collateral;
    }
}

fn policy_check(mut config: Config, files: Vec<PathBuf>) -> Result<ExitCode> {
    config.validate()?;
    config.policy.files.extend(files);
    let engine = config.engine()?;
    println!(
        "ok: {} policies ({} task profiles compiled, baseline {}), digest {}",
        engine.len(),
        config.profiles.len(),
        if config.policy.baseline { "on" } else { "off" },
        &engine.digest[..12]
    );
    Ok(ExitCode::SUCCESS)
}

fn policy_test(config: &Config, dir: &Path) -> Result<ExitCode> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading test directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml" || x == "json"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!(
            "{}: no test cases (*.toml with [[case]] tables, or *.json)",
            dir.display()
        );
    }
    let (mut passed, mut failed) = (0, 0);
    for f in &files {
        for (n, case) in cases::read_cases(f)?.iter().enumerate() {
            let name = if case.name.is_empty() {
                format!("case {}", n + 1)
            } else {
                case.name.clone()
            };
            if case.expect.is_none() && case.policy.is_none() && case.reason_contains.is_none() {
                bail!(
                    "{}: `{name}` expects nothing: set `expect`, `policy` or `reason_contains`",
                    f.display()
                );
            }
            let outcome = cases::run(config, case)
                .map_err(|e| e.to_string())
                .and_then(|r| cases::check(case, &r));
            match outcome {
                Ok(()) => {
                    passed += 1;
                    println!("PASS {}: {name}", f.display());
                }
                Err(why) => {
                    failed += 1;
                    println!("FAIL {}: {name}\n      {why}", f.display());
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn read_specs(path: &Path) -> Result<Vec<ToolSpec>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let lists: Vec<serde_json::Value> = match value {
        serde_json::Value::Array(_) => vec![value],
        serde_json::Value::Object(map) => map.into_values().collect(),
        _ => bail!(
            "{}: expected a list of tool specs or an object of lists",
            path.display()
        ),
    };
    let mut specs = Vec::new();
    for list in lists {
        let more: Vec<ToolSpec> = serde_json::from_value(list)
            .with_context(|| format!("{}: not a list of tool specs", path.display()))?;
        specs.extend(more);
    }
    Ok(specs)
}

fn tools_explain(config: &Config, specs: Option<&Path>, names: &[String]) -> Result<ExitCode> {
    let mut all: Vec<ToolSpec> = config.tools.iter().map(|(n, e)| e.spec(n)).collect();
    if let Some(p) = specs {
        all.extend(read_specs(p)?);
    }
    for n in names {
        if !all.iter().any(|s| &s.name == n) {
            all.push(ToolSpec {
                name: n.clone(),
                ..ToolSpec::default()
            });
        }
    }
    if all.is_empty() {
        bail!("no tools to explain: name some, pass --specs FILE, or declare [tools.<name>] in the config");
    }
    let mut seen = std::collections::HashSet::new();
    all.retain(|s| seen.insert(s.name.clone()));
    // The tools are read as one set (a removal that an `add` tool puts back is not destructive).
    let resolved = tools::resolve_set(&all, "guard", |name| {
        config.tools.get(name).map(|e| &e.traits)
    });
    for (spec, mut tool) in all.iter().zip(resolved) {
        if !names.is_empty() && !names.contains(&spec.name) {
            continue;
        }
        if let Some(up) = config
            .tools
            .get(&spec.name)
            .and_then(|e| e.upstream.clone())
        {
            tool.upstream = up;
        }
        println!("{}", tools::explain(&tool));
    }
    // An entry that names no upstream, for a name several upstreams have listed (their pins in
    // the data dir say which), applies to none of them.
    if let Some(store) = warden_gateway::existing_store(config, &config.data_dir())? {
        let pins = store.tool_pins()?;
        for (name, entry) in &config.tools {
            let by: Vec<&str> = pins
                .iter()
                .filter(|p| &p.tool == name)
                .map(|p| p.upstream.as_str())
                .collect();
            if entry.upstream.is_none() && by.len() > 1 {
                println!(
                    "note: `[tools.{name}]` names no upstream, and {} publish `{name}`: the entry applies to none of them; add `upstream = \"…\"` to it",
                    by.join(" and ")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
