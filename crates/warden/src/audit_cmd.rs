//! `warden audit …`: verify the audit log, print inclusion and consistency proofs, tail events,
//! export them (OCSF 1.8 or Warden's JSON), show the latest signed checkpoint and the log's
//! public key. Reads only; safe beside a running
//! gateway.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use serde_json::json;
use warden_audit::{AuditReader, EventFilter, EventKind, Hash, NoteVerifier, VerifyOptions};
use warden_gateway::Config;

#[derive(clap::Subcommand)]
pub enum AuditCommand {
    /// Recompute every entry's hash and the Merkle tree, and check every signed checkpoint.
    /// Exits 1 and names the first bad entry if the log was edited, cut or reordered.
    Verify {
        /// Also check a signed checkpoint kept outside the log (saved earlier with
        /// `warden audit checkpoint > FILE`, or a witness's copy).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Trust this C2SP verifier key (from `warden audit public-key`) instead of the one in
        /// the data dir, which someone who can edit the log can also replace.
        #[arg(long)]
        key: Option<String>,
    },
    /// Print a proof that an event is in the tree of the latest signed checkpoint.
    Proof {
        /// The event's index.
        #[arg(long)]
        event: u64,
    },
    /// Print a proof that the tree at one signed checkpoint size is a prefix of another.
    Consistency {
        /// The older checkpoint's tree size.
        old: u64,
        /// The newer checkpoint's tree size.
        new: u64,
    },
    /// Print the latest events, oldest first.
    Tail {
        /// How many.
        #[arg(short, long, default_value_t = 20)]
        n: usize,
        /// Only this session's events.
        #[arg(long)]
        session: Option<String>,
        /// Only events of this kind (session_opened, call, decision, approval, result, alert,
        /// message).
        #[arg(long, value_parser = parse_kind)]
        kind: Option<EventKind>,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Find events: decisions of a tool, denied or held calls, one agent's sessions, a time range.
    Search {
        #[arg(long)]
        session: Option<String>,
        /// Only sessions of this agent.
        #[arg(long)]
        agent: Option<String>,
        /// Only events about this tool.
        #[arg(long)]
        tool: Option<String>,
        /// Only decisions with this verdict (allow, hold, deny).
        #[arg(long)]
        verdict: Option<String>,
        #[arg(long, value_parser = parse_kind)]
        kind: Option<EventKind>,
        /// From this time (milliseconds since the epoch, a duration back like 24h, or a date).
        #[arg(long)]
        since: Option<String>,
        /// Until this time (same forms).
        #[arg(long)]
        until: Option<String>,
        /// At most this many, the newest.
        #[arg(short, long, default_value_t = 100)]
        n: usize,
        #[arg(long)]
        json: bool,
    },
    /// Explain an event: the causal chain from the principal and the instruction, through the
    /// earlier calls and results whose values reached it (untrusted ones named), to the decision,
    /// the policies and reasons, and the approver.
    Explain {
        /// The event's index (`warden audit tail` shows them).
        id: u64,
        /// The chain as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Export events for a SIEM, one JSON object a line, oldest first.
    ///
    /// `--format ocsf`: OCSF 1.8.0. A decided call, and a person's answer to a held one, is an
    /// API Activity (class 6003) with the security_control profile (`action_id`,
    /// `disposition_id`, `policy`); an alert is a Detection Finding (2004); provenance, reasons
    /// and the session's channel are under `unmapped.warden`. Session openings, results and
    /// messages are context and not exported as events of their own.
    /// `--format json`: Warden's own events, as `tail --json` prints them.
    ///
    /// Check an OCSF export with `scripts/ocsf-validate.py FILE` (needs
    /// `pip install ocsf-json-schema==1.2.0 jsonschema`).
    Export {
        #[arg(long, value_enum, default_value_t = ExportFormat::Ocsf)]
        format: ExportFormat,
        /// Only this session's events.
        #[arg(long)]
        session: Option<String>,
        /// From this time (milliseconds since the epoch, a duration back like 24h, or a date).
        #[arg(long)]
        since: Option<String>,
        /// Until this time (same forms).
        #[arg(long)]
        until: Option<String>,
        /// Write here instead of stdout (replaced if it exists).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print the latest signed checkpoint (a C2SP signed note); save it to check the log later.
    Checkpoint,
    /// Print the log's public key as a C2SP verifier key string.
    PublicKey,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ExportFormat {
    /// OCSF 1.8.0 JSON lines.
    Ocsf,
    /// Warden's own events, JSON lines.
    Json,
}

fn parse_kind(s: &str) -> Result<EventKind, String> {
    EventKind::parse(s).ok_or_else(|| {
        let kinds: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
        format!("unknown event kind `{s}`; one of: {}", kinds.join(", "))
    })
}

fn hex(h: &Hash) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `cmd` on the log the config names (the shared database's, or the one in `data_dir`),
/// written by a writer that signs within `config.audit.checkpoint_ms`.
pub fn run(config: &Config, data_dir: &Path, cmd: AuditCommand) -> Result<ExitCode> {
    let checkpoint_ms = config.audit.checkpoint_ms;
    let reader = warden_gateway::audit_reader(config, data_dir).with_context(|| {
        match &config.store.url {
            Some(_) => "opening the audit log in the shared database ([store] url)".to_string(),
            None => format!("opening the audit log in {}", data_dir.display()),
        }
    })?;
    match cmd {
        AuditCommand::Verify { checkpoint, key } => {
            let external = match checkpoint {
                Some(path) => {
                    let note = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading checkpoint file {}", path.display()))?;
                    Some((path.display().to_string(), note))
                }
                None => None,
            };
            let verifier = key
                .map(|k| NoteVerifier::parse(&k))
                .transpose()
                .context("parsing --key")?;
            let report = reader.verify(&VerifyOptions {
                external,
                verifier,
                checkpoint_ms: Some(checkpoint_ms),
            })?;
            if report.ok() {
                println!("{}", report.message());
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("{}", report.message());
            for p in report.problems.iter().skip(1) {
                eprintln!("  also: {}", p.message);
            }
            Ok(ExitCode::from(1))
        }
        AuditCommand::Explain { id, json } => {
            if json {
                let chain = causal_chain(&reader, id)?;
                println!("{}", serde_json::to_string_pretty(&chain)?);
            } else {
                print!("{}", explain_event(&reader, id)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Proof { event } => {
            let p = reader.inclusion_proof(event)?;
            let out = json!({
                "index": p.index,
                "tree_size": p.checkpoint.checkpoint.size,
                "leaf_hash": hex(&p.leaf_hash),
                "proof": p.path.iter().map(hex).collect::<Vec<_>>(),
                "root": hex(&p.checkpoint.checkpoint.root),
                "checkpoint": p.checkpoint.note,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Consistency { old, new } => {
            if old > new {
                bail!("OLD ({old}) must not be larger than NEW ({new})");
            }
            let p = reader.consistency_proof(old, new)?;
            let out = json!({
                "old_size": old,
                "new_size": new,
                "old_root": hex(&p.old.checkpoint.root),
                "new_root": hex(&p.new.checkpoint.root),
                "proof": p.path.iter().map(hex).collect::<Vec<_>>(),
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Search {
            session,
            agent,
            tool,
            verdict,
            kind,
            since,
            until,
            n,
            json,
        } => {
            let since_ms = since
                .as_deref()
                .map(crate::replay::parse_time)
                .transpose()?;
            let until_ms = until
                .as_deref()
                .map(crate::replay::parse_time)
                .transpose()?;
            let sessions_of_agent: Option<std::collections::HashSet<String>> = match &agent {
                None => None,
                Some(a) => Some(
                    reader
                        .events(&EventFilter {
                            kind: Some(EventKind::SessionOpened),
                            ..EventFilter::default()
                        })?
                        .into_iter()
                        .filter(|e| e.event.body["agent"] == a.as_str())
                        .map(|e| e.event.session)
                        .collect(),
                ),
            };
            let filter = EventFilter {
                session,
                kind,
                since_ms,
                until_ms,
                ..EventFilter::default()
            };
            let mut found: Vec<_> = reader
                .events(&filter)?
                .into_iter()
                .filter(|e| {
                    sessions_of_agent
                        .as_ref()
                        .is_none_or(|s| s.contains(&e.event.session))
                })
                .filter(|e| {
                    tool.as_ref()
                        .is_none_or(|t| e.event.body["tool"] == t.as_str())
                })
                .filter(|e| {
                    verdict
                        .as_ref()
                        .is_none_or(|v| e.event.body["verdict"] == v.as_str())
                })
                .collect();
            let skip = found.len().saturating_sub(n);
            found.drain(..skip);
            print_events(&found, json)?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Tail {
            n,
            session,
            kind,
            json,
        } => {
            let filter = EventFilter {
                session,
                kind,
                limit: n,
                newest: true,
                ..EventFilter::default()
            };
            print_events(&reader.events(&filter)?, json)?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export {
            format,
            session,
            since,
            until,
            out,
        } => {
            let filter = EventFilter {
                session,
                since_ms: since
                    .as_deref()
                    .map(crate::replay::parse_time)
                    .transpose()?,
                until_ms: until
                    .as_deref()
                    .map(crate::replay::parse_time)
                    .transpose()?,
                ..EventFilter::default()
            };
            let lines = export(&reader, &filter, format)?;
            match out {
                Some(path) => std::fs::write(&path, lines.concat())
                    .with_context(|| format!("writing {}", path.display()))?,
                None => {
                    use std::io::Write as _;
                    let mut stdout = std::io::stdout().lock();
                    for line in &lines {
                        stdout.write_all(line.as_bytes())?;
                    }
                    stdout.flush()?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Checkpoint => {
            let Some(cp) = reader.latest_checkpoint()? else {
                bail!("no checkpoint has been signed yet: the gateway signs one within a second of the first event");
            };
            print!("{}", cp.note);
            let len = reader.len()?;
            if len > cp.checkpoint.size {
                eprintln!(
                    "note: entries {}..{len} are not covered yet; the running gateway signs them shortly",
                    cp.checkpoint.size
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::PublicKey => {
            println!("{}", reader.verifier());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The export's lines (each ending in a newline), oldest first.
fn export(reader: &AuditReader, filter: &EventFilter, format: ExportFormat) -> Result<Vec<String>> {
    let events = reader.events(filter)?;
    if let ExportFormat::Json = format {
        return events
            .iter()
            .map(|e| Ok(format!("{}\n", serde_json::to_string(e)?)))
            .collect();
    }
    // Who and how each session was opened: the actor of its events, even when the opening is
    // outside the time range.
    let mut opened = std::collections::HashMap::new();
    for e in reader.events(&EventFilter {
        session: filter.session.clone(),
        kind: Some(EventKind::SessionOpened),
        ..EventFilter::default()
    })? {
        opened.insert(e.event.session.clone(), e.event.body);
    }
    let mut lines = Vec::new();
    for e in &events {
        let session = opened.get(&e.event.session);
        if let Some(o) = warden_audit::ocsf::event(e, session, env!("CARGO_PKG_VERSION")) {
            lines.push(format!("{}\n", serde_json::to_string(&o)?));
        }
    }
    Ok(lines)
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// An event and the earlier events that caused it, oldest first; an error if there is no such
/// event.
fn causal_chain(reader: &AuditReader, id: u64) -> Result<Vec<warden_audit::LoggedEvent>> {
    let chain = reader.causes_closure(id)?;
    if chain.is_empty() {
        bail!("no event {id} in the audit log ({} events)", reader.len()?);
    }
    Ok(chain)
}

/// What `warden audit explain ID` prints: the event's causal chain in plain words.
pub fn explain_event(reader: &AuditReader, id: u64) -> Result<String> {
    Ok(explain(id, &causal_chain(reader, id)?))
}

/// The causal chain of an event in plain words, oldest first.
fn explain(id: u64, chain: &[warden_audit::LoggedEvent]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for e in chain {
        let b = &e.event.body;
        let head = format!("#{:<5}", e.index);
        let _ = match e.event.kind {
            EventKind::SessionOpened => writeln!(
                out,
                "{head} session {} opened for principal {} by agent {} (profile {}, channel {})\n       instruction: {:?}",
                e.event.session,
                text(&b["principal"]),
                text(&b["agent"]),
                b["profile"].as_str().unwrap_or("none"),
                text(&b["channel"]),
                text(&b["instruction"]),
            ),
            EventKind::Message => writeln!(out, "{head} {}: {:?}", text(&b["step"]), text(&b["text"])),
            EventKind::Result => writeln!(
                out,
                "{head} result of `{}` call {} — {} content, {}, {} bytes",
                text(&b["tool"]),
                text(&b["call_id"]),
                text(&b["integrity"]).to_uppercase(),
                text(&b["confidentiality"]),
                text(&b["size"]),
            ),
            EventKind::Decision | EventKind::Call => {
                let _ = writeln!(
                    out,
                    "{head} call `{}` {} → {}",
                    text(&b["tool"]),
                    b["args"],
                    text(&b["verdict"]).to_uppercase()
                );
                if let Some(prov) = b["provenance"].as_object() {
                    for (arg, p) in prov {
                        let sources: Vec<String> = p["sources"]
                            .as_array()
                            .map(|v| v.iter().map(|s| format!("step {s}")).collect())
                            .unwrap_or_default();
                        if p["untrusted_prose_only"] == true || p["untrusted_only"] == true {
                            let _ = writeln!(out, "         argument `{arg}` carries a value found only in untrusted content ({})", sources.join(", "));
                        } else if p["trusted"] == true {
                            let _ = writeln!(out, "         argument `{arg}` comes from trusted content ({})", sources.join(", "));
                        }
                    }
                }
                if let Some(reasons) = b["reasons"].as_array() {
                    for r in reasons {
                        let _ = writeln!(out, "         [{}] {}", text(&r["policy"]), text(&r["message"]));
                    }
                }
                if !b["policy_digest"].is_null() {
                    writeln!(out, "         policy set {}", text(&b["policy_digest"]))
                } else {
                    Ok(())
                }
            }
            EventKind::Approval => writeln!(
                out,
                "{head} {} by {} {}",
                text(&b["decision"]),
                text(&b["approver"]),
                b.get("comment").map(text).unwrap_or_default()
            ),
            EventKind::Alert => writeln!(out, "{head} alert: {}", b),
        };
    }
    let _ = writeln!(out, "(event {id}: its causes first, then the event itself)");
    out
}

/// Events, one a line: index, time, session, kind, causes, body (or one JSON object a line).
fn print_events(events: &[warden_audit::LoggedEvent], json: bool) -> Result<()> {
    for e in events {
        if json {
            println!("{}", serde_json::to_string(e)?);
        } else {
            let causes = if e.event.causes.is_empty() {
                String::new()
            } else {
                let c: Vec<String> = e.event.causes.iter().map(u64::to_string).collect();
                format!(" <- {}", c.join(","))
            };
            println!(
                "{:>8}  {}  {}  {}{}  {}",
                e.index,
                e.event.time_ms,
                e.event.session,
                e.event.kind.as_str(),
                causes,
                e.event.body
            );
        }
    }
    Ok(())
}
