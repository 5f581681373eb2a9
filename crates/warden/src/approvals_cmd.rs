//! `warden approvals`: list held calls and approve or deny them, on the data dir directly (the
//! same store and audit log a running `warden mcp` or `warden serve` waits on).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use warden_gateway::runtime::now_ms;
use warden_gateway::Config;
use warden_store::{Approval, ApprovalStatus};

#[derive(clap::Args)]
pub struct ApprovalsArgs {
    /// Data directory (default: server.data_dir of the config).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: ApprovalsCommand,
}

#[derive(Subcommand)]
enum ApprovalsCommand {
    /// List held calls waiting for a person's decision.
    List {
        /// Also list approvals already approved, denied or expired.
        #[arg(long)]
        all: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Let a held call through: the waiting agent's call is forwarded.
    Approve(Decide),
    /// Refuse a held call: the waiting agent is told who refused it.
    Deny(Decide),
}

#[derive(clap::Args)]
struct Decide {
    /// The decision id, `<session>/<seq>`, as `list` shows it.
    id: String,
    /// Who decides (recorded in the audit log as "NAME (cli)").
    #[arg(long)]
    approver: String,
    /// Why, for the audit log and the agent.
    #[arg(long)]
    comment: Option<String>,
}

pub fn run(mut config: Config, args: ApprovalsArgs) -> Result<ExitCode> {
    if let Some(d) = args.data_dir {
        config.server.data_dir = std::env::current_dir()
            .context("reading the current directory")?
            .join(d);
    }
    let dir = config.data_dir();
    let rt = warden_gateway::runtime(config)
        .with_context(|| format!("opening Warden's state in {}", dir.display()))?;
    let (decide, approve) = match args.command {
        ApprovalsCommand::List { all, json } => {
            let status = (!all).then_some(ApprovalStatus::Pending);
            let approvals = rt.approvals(status)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&approvals)?);
            } else {
                print!("{}", render(&approvals, all));
            }
            return Ok(ExitCode::SUCCESS);
        }
        ApprovalsCommand::Approve(d) => (d, true),
        ApprovalsCommand::Deny(d) => (d, false),
    };
    let approver = format!("{} (cli)", decide.approver.trim());
    let comment = decide.comment.filter(|c| !c.trim().is_empty());
    let approval = rt
        .resolve_approval(&decide.id, approve, &approver, comment)
        .with_context(|| format!("deciding approval `{}`", decide.id))?;
    println!(
        "{} {} (`{}`), as {approver}; recorded in the audit log",
        approval.status.as_str(),
        approval.id,
        approval.tool
    );
    Ok(ExitCode::SUCCESS)
}

/// One line per approval: id, status, age, tool, the first reason, and who decided.
fn render(approvals: &[Approval], all: bool) -> String {
    if approvals.is_empty() {
        return if all {
            "no approvals\n".into()
        } else {
            "no pending approvals\n".into()
        };
    }
    let now = now_ms();
    let mut out = format!(
        "{:<32} {:<9} {:>6}  {:<20} {}\n",
        "ID", "STATUS", "AGE", "TOOL", "WHY"
    );
    for a in approvals {
        let why = a
            .reasons
            .get(0)
            .and_then(|r| r.get("policy"))
            .and_then(|p| p.as_str())
            .unwrap_or("");
        let decided = match (&a.approver, &a.comment) {
            (Some(p), _) => format!("  (by {p})"),
            (None, Some(c)) if a.status == ApprovalStatus::Expired => format!("  ({c})"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "{:<32} {:<9} {:>6}  {:<20} {why}{decided}\n",
            a.id,
            a.status.as_str(),
            age(now.saturating_sub(a.created_ms)),
            a.tool
        ));
    }
    out
}

fn age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}
