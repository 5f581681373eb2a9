//! `warden tools pins` and `warden tools accept`: the tool definitions Warden pinned (the first
//! it saw of each tool of each upstream, or the one an operator accepted since), the changes
//! awaiting review, and accepting one. Both read the session store under the data dir, which
//! `warden serve` and `warden mcp` share: a change accepted here lets the next call of the tool
//! through in a running server.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use warden_gateway::runtime::describe_change;
use warden_gateway::Config;
use warden_store::{SessionStore, ToolPin};

/// The store holding the pins: the shared database the config names, or `dir`'s.
fn open(config: &Config, dir: &Path) -> Result<Box<dyn SessionStore>> {
    match warden_gateway::existing_store(config, dir)? {
        Some(store) => Ok(store),
        None => bail!(
            "no tools are pinned: {} does not exist (Warden pins each tool the first time an upstream lists it)",
            dir.join(warden_audit::DB_FILE).display()
        ),
    }
}

/// A time as `2026-12-07 08:15:02 UTC`.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

fn status(pin: &ToolPin) -> String {
    match &pin.seen {
        None => "pinned".to_owned(),
        Some(seen) => format!(
            "CHANGED at {}: {} (calls held until accepted)",
            utc(seen.seen_at_ms),
            describe_change(&pin.definition, &seen.definition)
        ),
    }
}

/// `warden tools pins`: every pin, changes first.
pub fn list(config: &Config, dir: &Path, json: bool) -> Result<ExitCode> {
    let mut pins = open(config, dir)?.tool_pins()?;
    pins.sort_by_key(|p| p.seen.is_none());
    if json {
        println!("{}", serde_json::to_string_pretty(&pins)?);
        return Ok(ExitCode::SUCCESS);
    }
    if pins.is_empty() {
        println!(
            "No tools are pinned yet: Warden pins each tool the first time an upstream lists it."
        );
        return Ok(ExitCode::SUCCESS);
    }
    for p in &pins {
        println!(
            "{:<16} {:<28} {}  pinned {}  {}",
            p.upstream,
            p.tool,
            &p.digest[..p.digest.len().min(19)],
            utc(p.pinned_at_ms),
            status(p)
        );
    }
    let changed = pins.iter().filter(|p| p.seen.is_some()).count();
    if changed > 0 {
        println!(
            "\n{changed} changed tool(s). Review with `warden tools pins --json` (pinned and new \
             definitions), then `warden tools accept UPSTREAM TOOL --by NAME`."
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `warden tools accept UPSTREAM TOOL --by NAME`: pin the definition last seen, through the
/// runtime over the data dir (as `warden approvals` decides), so the audit log records who
/// accepted it and a pin the config sets is refused.
pub fn accept(
    mut config: Config,
    data_dir: Option<PathBuf>,
    upstream: &str,
    tool: &str,
    by: &str,
) -> Result<ExitCode> {
    if let Some(d) = data_dir {
        config.server.data_dir = std::env::current_dir()
            .context("reading the current directory")?
            .join(d);
    }
    let dir = config.data_dir();
    open(&config, &dir)?;
    let rt = warden_gateway::runtime(config)
        .with_context(|| format!("opening Warden's state in {}", dir.display()))?;
    let pin = rt.accept_tool(upstream, tool, &format!("{} (cli)", by.trim()))?;
    println!(
        "Accepted `{tool}` of `{upstream}`: now pinned at {}.",
        pin.digest
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formats_a_few_known_instants() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(super::utc(1_796_631_302_000), "2026-12-07 08:15:02 UTC");
    }
}
