//! Tool traits: what each tool does (read, write, destructive, open-world), how confidential its
//! results are and which parameters are sensitive sinks, resolved from the operator's config, then
//! MCP annotations, then inference from the name, description and schema, each with its evidence.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use warden_model::{
    Confidentiality, Evidence, Params, Sink, SinkKind, Sinks, Tool, Trait, TraitValue,
};

/// A tool as an upstream describes it (an MCP `tools/list` entry, a tools.json entry, a guard-API
/// declaration).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// JSON Schema of the parameters (`{"type":"object","properties":{…}}`).
    #[serde(default, alias = "inputSchema", alias = "parameters")]
    pub input_schema: Value,
    #[serde(default)]
    pub annotations: Option<Annotations>,
}

/// MCP tool annotations. Absent hints are "no evidence", not the spec's defaults: most servers
/// send none, and the defaults would say every tool is destructive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Annotations {
    pub read_only_hint: Option<bool>,
    pub destructive_hint: Option<bool>,
    pub open_world_hint: Option<bool>,
}

/// What the operator says about a tool in the config (`[tools.<name>]`): the strongest evidence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolConfig {
    pub read: Option<bool>,
    pub write: Option<bool>,
    pub destructive: Option<bool>,
    pub open_world: Option<bool>,
    pub returns: Option<Confidentiality>,
    /// Parameters that are sensitive sinks, with their kind.
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkKind>,
    /// Parameters that are not sinks, whatever inference says.
    #[serde(default)]
    pub plain: Vec<String>,
}

const READ_VERBS: &[&str] = &[
    "get", "list", "search", "read", "find", "fetch", "query", "check", "view", "show", "lookup",
    "describe", "count", "browse", "retrieve", "load", "inspect", "download", "stat", "lookup",
];
const WRITE_VERBS: &[&str] = &[
    "send",
    "create",
    "add",
    "update",
    "set",
    "write",
    "post",
    "put",
    "append",
    "edit",
    "modify",
    "share",
    "reserve",
    "book",
    "schedule",
    "reschedule",
    "invite",
    "upload",
    "move",
    "rename",
    "copy",
    "publish",
    "reply",
    "forward",
    "submit",
    "pay",
    "transfer",
    "execute",
    "exec",
    "run",
    "insert",
    "patch",
    "save",
    "mark",
    "assign",
    "grant",
    "approve",
    "cancel",
    "delete",
    "remove",
    "drop",
    "destroy",
    "purge",
    "wipe",
    "revoke",
    "erase",
    "kill",
    "terminate",
    "truncate",
    "overwrite",
    "reset",
    "uninstall",
    "archive",
    "commit",
    "push",
    "merge",
    "deploy",
    "order",
];
const DESTRUCTIVE_VERBS: &[&str] = &[
    "delete",
    "remove",
    "drop",
    "destroy",
    "purge",
    "wipe",
    "erase",
    "truncate",
    "cancel",
    "revoke",
    "kill",
    "terminate",
    "pay",
    "transfer",
    "overwrite",
    "reset",
    "uninstall",
];
/// Words that say a read can act as it fetches: follow a link that does something, submit,
/// store what it fetched.
const ACTING_WORDS: &[&str] = &[
    "click",
    "clicks",
    "submit",
    "submits",
    "trigger",
    "triggers",
    "download",
    "downloads",
    "install",
    "installs",
    "execute",
    "executes",
];
/// Words that say a tool touches content or parties outside the trust boundary.
const OPEN_WORLD_WORDS: &[&str] = &[
    "email",
    "emails",
    "mail",
    "inbox",
    "message",
    "messages",
    "web",
    "webpage",
    "page",
    "url",
    "http",
    "https",
    "browse",
    "internet",
    "review",
    "reviews",
    "comment",
    "comments",
    "post",
    "posts",
    "channel",
    "chat",
    "feed",
    "news",
    "file",
    "files",
    "document",
    "documents",
    "calendar",
    "event",
    "events",
    "contact",
    "contacts",
    "share",
    "invite",
    "publish",
    "webhook",
    "download",
    "upload",
    "forward",
    "reply",
    "tweet",
    "slack",
    "issue",
    "issues",
];
/// Words that say a tool returns the principal's own state or the system's, not outside content.
const CLOSED_WORLD_WORDS: &[&str] = &[
    "current", "time", "date", "day", "today", "now", "balance", "user", "me", "profile",
    "settings", "config", "status", "version", "whoami",
];
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwords",
    "secret",
    "secrets",
    "credential",
    "credentials",
    "token",
    "tokens",
    "apikey",
    "key",
    "keys",
    "ssn",
    "private",
];
const INTERNAL_WORDS: &[&str] = &[
    "user",
    "information",
    "profile",
    "balance",
    "account",
    "accounts",
    "contacts",
    "contact",
    "transactions",
    "transaction",
    "salary",
    "medical",
    "email",
    "emails",
    "inbox",
    "file",
    "files",
    "document",
    "documents",
    "calendar",
    "customer",
    "customers",
    "record",
    "records",
];
/// Parameters that carry free text (a body, a subject): content, not a target.
const FREE_TEXT_PARAMS: &[&str] = &[
    "body",
    "content",
    "contents",
    "text",
    "message",
    "subject",
    "title",
    "description",
    "note",
    "notes",
    "comment",
    "comments",
    "summary",
    "reason",
    "prompt",
    "question",
    "answer",
    "caption",
];
const TEMPORAL_WORDS: &[&str] = &[
    "time",
    "date",
    "day",
    "days",
    "start",
    "end",
    "hour",
    "hours",
    "minute",
    "duration",
    "timestamp",
    "when",
    "year",
    "month",
    "week",
    "timezone",
];

/// Whether a parameter's name says it holds a time or a date (`start_time`, `new_end_day`).
pub fn is_temporal(param: &str) -> bool {
    words(param)
        .iter()
        .any(|w| TEMPORAL_WORDS.contains(&w.as_str()))
}

/// Split a name into lowercase words: `send_email`, `sendEmail`, `send-email`, `mail.send`.
pub fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn first_match<'a>(words: &'a [String], set: &[&str]) -> Option<&'a str> {
    words
        .iter()
        .find(|w| set.contains(&w.as_str()))
        .map(String::as_str)
}

fn value(value: bool, evidence: Evidence, why: impl Into<String>) -> TraitValue {
    TraitValue {
        value,
        evidence,
        why: why.into(),
    }
}

/// Resolve a tool's traits: config beats annotations beats inference beats the default.
pub fn resolve(spec: &ToolSpec, upstream: &str, config: Option<&ToolConfig>) -> Tool {
    let name_words = words(&spec.name);
    let desc_words = words(&spec.description);
    let inferred = infer(&spec.name, &name_words, &desc_words);
    let ann = spec.annotations.clone().unwrap_or_default();

    // A server's hint may make a tool more guarded, never less: a hint that would lower a
    // guard counts only where inference already agrees (the name or the safe default says the
    // same), so a server cannot turn a guard off by calling `delete_repository` read-only.
    let pick = |t: Trait, configured: Option<bool>, hinted: Option<(bool, String)>| {
        if let Some(v) = configured {
            return value(v, Evidence::Config, "set in Warden's config");
        }
        let inferred = inferred.get(t);
        match hinted {
            Some((v, why)) if v || t == Trait::Read || v == inferred.value => {
                value(v, Evidence::Annotation, why)
            }
            Some((_, why)) => value(
                inferred.value,
                inferred.evidence,
                format!(
                    "{}; {why} ignored: a server's hint never lowers a guard",
                    inferred.why
                ),
            ),
            None => inferred,
        }
    };
    let ro = ann.read_only_hint;
    let cfg = config.cloned().unwrap_or_default();
    let read = pick(
        Trait::Read,
        cfg.read,
        ro.map(|v| (v, format!("MCP annotation readOnlyHint={v}"))),
    );
    let write = pick(
        Trait::Write,
        cfg.write,
        ro.map(|v| (!v, format!("MCP annotation readOnlyHint={v}"))),
    );
    let destructive_hint = match (ro, ann.destructive_hint) {
        (Some(true), _) => Some((false, "MCP annotation readOnlyHint=true".to_owned())),
        (_, Some(v)) => Some((v, format!("MCP annotation destructiveHint={v}"))),
        _ => None,
    };
    let destructive = pick(Trait::Destructive, cfg.destructive, destructive_hint);
    let open_world = pick(
        Trait::OpenWorld,
        cfg.open_world,
        ann.open_world_hint
            .map(|v| (v, format!("MCP annotation openWorldHint={v}"))),
    );
    let (returns, returns_why) = match cfg.returns {
        Some(c) => (c, "set in Warden's config".to_owned()),
        None => infer_returns(&name_words),
    };
    let sinks = sinks(spec, &cfg, write.value || destructive.value);
    Tool {
        name: spec.name.clone(),
        upstream: upstream.to_owned(),
        read,
        write,
        destructive,
        open_world,
        returns,
        returns_why,
        sinks,
        changed: None,
    }
}

/// Resolve the tools one upstream publishes, each as [`resolve`] does, then read them as a set:
/// a removal (`cart_remove_item`, `remove_user_from_team`) is hard to undo only when nothing puts
/// back what it removed, so where the same upstream publishes the matching `add` tool
/// (`cart_add_item`, `add_user_to_team`), an inferred `destructive` becomes false, with that tool
/// as the evidence. Deleting is never undone this way: what it destroys is gone.
pub fn resolve_set<'c>(
    specs: &[ToolSpec],
    upstream: &str,
    config: impl Fn(&str) -> Option<&'c ToolConfig>,
) -> Vec<Tool> {
    let mut tools: Vec<Tool> = specs
        .iter()
        .map(|s| resolve(s, upstream, config(&s.name)))
        .collect();
    let names: Vec<Vec<String>> = specs.iter().map(|s| words(&s.name)).collect();
    for (i, tool) in tools.iter_mut().enumerate() {
        if !tool.destructive.value || tool.destructive.evidence != Evidence::Inferred {
            continue;
        }
        let Some(inverse) = put_back_by(&names[i]) else {
            continue;
        };
        if let Some(j) = names.iter().position(|n| *n == inverse) {
            tool.destructive = value(
                false,
                Evidence::Inferred,
                format!(
                    "name `{}` removes, and `{}` puts back what it removes",
                    tool.name, specs[j].name
                ),
            );
        }
    }
    tools
}

/// The words of the tool that would put back what a `remove` tool takes out: `remove` → `add`,
/// `from` → `to`. `None` for a name without `remove`.
fn put_back_by(name: &[String]) -> Option<Vec<String>> {
    if !name.iter().any(|w| w == "remove") {
        return None;
    }
    Some(
        name.iter()
            .map(|w| match w.as_str() {
                "remove" => "add".to_owned(),
                "from" => "to".to_owned(),
                other => other.to_owned(),
            })
            .collect(),
    )
}

/// The traits a tool would have from its name and description alone.
struct Inferred {
    read: TraitValue,
    write: TraitValue,
    destructive: TraitValue,
    open_world: TraitValue,
}

impl Inferred {
    fn get(&self, t: Trait) -> TraitValue {
        match t {
            Trait::Read => self.read.clone(),
            Trait::Write => self.write.clone(),
            Trait::Destructive => self.destructive.clone(),
            Trait::OpenWorld => self.open_world.clone(),
        }
    }
}

fn infer(name: &str, name_words: &[String], desc_words: &[String]) -> Inferred {
    let verb = name_words.first().map(String::as_str).unwrap_or("");
    // The leading verb decides; a verb elsewhere in the name (`file_delete`, `resources/read`)
    // counts as well.
    let write_verb = if WRITE_VERBS.contains(&verb) {
        Some(verb)
    } else if READ_VERBS.contains(&verb) {
        None
    } else {
        first_match(name_words, WRITE_VERBS)
    };
    let read_verb = if READ_VERBS.contains(&verb) {
        Some(verb)
    } else if write_verb.is_none() {
        first_match(name_words, READ_VERBS)
    } else {
        None
    };
    let destructive_verb =
        first_match(name_words, DESTRUCTIVE_VERBS).filter(|_| write_verb.is_some());
    // A read that can act as it fetches (a browser that clicks, a download that stores what it
    // got) is a write as well: the name or the description says so.
    let acts = read_verb.and_then(|_| {
        first_match(name_words, ACTING_WORDS)
            .map(|w| format!("name `{name}` mentions `{w}`"))
            .or_else(|| {
                first_match(desc_words, ACTING_WORDS)
                    .map(|w| format!("description says it can `{w}`"))
            })
    });

    let (write, read) = match (write_verb, read_verb) {
        (Some(v), _) => (
            value(
                true,
                Evidence::Inferred,
                format!("name `{name}` has the verb `{v}`"),
            ),
            value(
                false,
                Evidence::Inferred,
                format!("name `{name}` has the verb `{v}`"),
            ),
        ),
        (None, Some(v)) => (
            match acts {
                Some(why) => value(
                    true,
                    Evidence::Inferred,
                    format!("a read that acts as it fetches: {why}"),
                ),
                None => value(
                    false,
                    Evidence::Inferred,
                    format!("name `{name}` has the read verb `{v}`"),
                ),
            },
            value(
                true,
                Evidence::Inferred,
                format!("name `{name}` has the read verb `{v}`"),
            ),
        ),
        // Unknown verb: assume it may change state, so it is guarded like a write.
        (None, None) => (
            value(
                true,
                Evidence::Default,
                "no read or write verb in the name: assumed to write",
            ),
            value(false, Evidence::Default, "no read verb in the name"),
        ),
    };
    let destructive = match destructive_verb {
        Some(v) => value(
            true,
            Evidence::Inferred,
            format!("name `{name}` has the verb `{v}`"),
        ),
        None => value(false, Evidence::Default, "no destructive verb in the name"),
    };
    let open_world = if let Some(w) = first_match(name_words, OPEN_WORLD_WORDS) {
        value(
            true,
            Evidence::Inferred,
            format!("name `{name}` mentions `{w}`"),
        )
    } else if let Some(w) = first_match(name_words, CLOSED_WORLD_WORDS) {
        value(
            false,
            Evidence::Inferred,
            format!("name `{name}` mentions `{w}`: own or system state"),
        )
    } else if let Some(w) = first_match(desc_words, OPEN_WORLD_WORDS) {
        value(
            true,
            Evidence::Inferred,
            format!("description mentions `{w}`"),
        )
    } else {
        // Content of unknown origin is treated as untrusted: the safe default (and MCP's).
        value(
            true,
            Evidence::Default,
            "nothing says its content is trusted",
        )
    };
    Inferred {
        read,
        write,
        destructive,
        open_world,
    }
}

fn infer_returns(name_words: &[String]) -> (Confidentiality, String) {
    if let Some(w) = first_match(name_words, SECRET_WORDS) {
        (Confidentiality::Secret, format!("name mentions `{w}`"))
    } else if let Some(w) = first_match(name_words, INTERNAL_WORDS) {
        (Confidentiality::Internal, format!("name mentions `{w}`"))
    } else {
        (
            Confidentiality::Public,
            "nothing says its results are confidential".to_owned(),
        )
    }
}

/// The kind of sink a parameter name denotes, from its words.
fn sink_kind_of(param: &str) -> Option<SinkKind> {
    let ws = words(param);
    let has = |set: &[&str]| ws.iter().any(|w| set.contains(&w.as_str()));
    // `email_id`, `message_ids`: the id of a message names the message, not a party.
    if has(&["id", "ids", "uuid"]) && has(&["email", "emails", "message", "messages", "mail"]) {
        return Some(SinkKind::Identifier);
    }
    if has(&[
        "recipient",
        "recipients",
        "to",
        "cc",
        "bcc",
        "email",
        "emails",
        "participants",
        "participant",
        "attendees",
        "attendee",
        "phone",
        "invitee",
        "invitees",
        "user",
        "users",
        "address",
        "addresses",
        "sender",
        "destination",
        "channel",
        // Who gains access is a party too: a member, a collaborator, an owner.
        "member",
        "members",
        "collaborator",
        "collaborators",
        "assignee",
        "assignees",
        "owner",
        "grantee",
        "reviewer",
        "reviewers",
    ]) {
        Some(SinkKind::Recipient)
    } else if has(&[
        "url", "uri", "link", "endpoint", "webhook", "domain", "host", "website",
    ]) {
        Some(SinkKind::Url)
    } else if has(&[
        "path",
        "file",
        "filename",
        "directory",
        "dir",
        "folder",
        "filepath",
    ]) {
        Some(SinkKind::Path)
    } else if has(&["iban", "account", "bic", "swift", "routing", "wallet"]) {
        Some(SinkKind::Account)
    } else if has(&[
        "amount",
        "price",
        "sum",
        "total",
        "quantity",
        "value",
        "limit",
        "limits",
        "quota",
        "threshold",
        "budget",
        "cap",
        "fee",
    ]) {
        // A limit on what may be spent or sent is an amount as much as a payment is.
        Some(SinkKind::Amount)
    } else if has(&["command", "cmd", "script", "shell", "sql"]) {
        // Not `code`: a discount, country or verification code is no program.
        Some(SinkKind::Command)
    } else {
        None
    }
}

/// Whether a parameter's words name a one-time code (`otp`, `passcode`, `verification_code`):
/// a code proves the act it was sent for and selects nothing, so whoever supplied it cannot
/// steer the act with it. Not a token or a key, which chooses whose account the act runs
/// under. Where such a code goes is guarded as any confidential value's is.
pub fn is_one_time_code(words: &[String]) -> bool {
    let has = |set: &[&str]| words.iter().any(|w| set.contains(&w.as_str()));
    has(&["otp", "totp", "passcode"])
        || (has(&["code", "pin"])
            && has(&[
                "verification",
                "verify",
                "confirmation",
                "confirm",
                "security",
            ]))
}

/// Verbs of a write that gives someone access or a share: the user it names receives it.
const GRANT_VERBS: &[&str] = &[
    "add",
    "invite",
    "grant",
    "share",
    "assign",
    "transfer",
    "give",
    "promote",
    "authorize",
];

/// A user named by a handle: a party when the call grants to it (`add_collaborator(username)`),
/// not when it signs in as it (`login(username)`).
const HANDLE_WORDS: &[&str] = &["username", "usernames", "handle", "login"];

fn sinks(spec: &ToolSpec, cfg: &ToolConfig, writes: bool) -> Sinks {
    let mut out: Vec<Sink> = Vec::new();
    let props = spec
        .input_schema
        .get("properties")
        .and_then(Value::as_object);
    let params: Vec<(&String, &Value)> = props.map(|p| p.iter().collect()).unwrap_or_default();
    let grants = writes && first_match(&words(&spec.name), GRANT_VERBS).is_some();
    for (param, schema) in params {
        if cfg.plain.contains(param) || cfg.sinks.contains_key(param) {
            continue;
        }
        let handle = grants && first_match(&words(param), HANDLE_WORDS).is_some();
        let kind = if handle {
            Some(SinkKind::Recipient)
        } else {
            sink_kind_of(param)
        };
        if let Some(kind) = kind {
            let why = if handle {
                format!("`{}` grants to the user `{param}` names", spec.name)
            } else {
                format!("parameter name `{param}` denotes a {}", kind.as_str())
            };
            out.push(Sink {
                param: param.clone(),
                kind,
                evidence: Evidence::Inferred,
                why,
            });
            continue;
        }
        // A write's other non-text, non-temporal parameters select what it acts on (an id, a
        // hotel, a company): an injected selector is as dangerous as an injected recipient.
        let ws = words(param);
        let free_text = ws.iter().any(|w| FREE_TEXT_PARAMS.contains(&w.as_str()));
        if is_one_time_code(&ws) {
            continue;
        }
        let temporal = is_temporal(param)
            || schema
                .get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| f.starts_with("date") || f == "time");
        let scalar_or_list = matches!(
            schema.get("type").and_then(Value::as_str),
            Some("string" | "array" | "integer") | None
        );
        if writes && !free_text && !temporal && scalar_or_list {
            out.push(Sink {
                param: param.clone(),
                kind: SinkKind::Identifier,
                evidence: Evidence::Inferred,
                why: format!("parameter `{param}` selects what this write acts on"),
            });
        }
    }
    for (param, kind) in &cfg.sinks {
        out.push(Sink {
            param: param.clone(),
            kind: *kind,
            evidence: Evidence::Config,
            why: "set in Warden's config".to_owned(),
        });
    }
    Sinks::from(out)
}

/// What a statement an argument carries does, when it changes state: a `query` tool sent
/// `DROP TABLE` acts, whatever its verb says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The argument that carries it.
    pub param: String,
    /// Its verb, upper-case (`DROP`, `UPDATE`).
    pub verb: String,
    /// It deletes what it acts on (`DROP`, `TRUNCATE`, `DELETE`): hard to undo.
    pub destructive: bool,
}

/// A SQL statement that changes state, where a statement starts (the text's start or after a
/// `;`): each verb with the words that make it a statement rather than an English phrase
/// ("update your browser" is none; "UPDATE staff SET" is one).
static STATE_CHANGING_SQL: LazyLock<regex::Regex> = LazyLock::new(|| {
    let object = r"(?:table|database|schema|index|view|user|role|trigger|function|procedure|sequence|collection|policy)\b";
    let name = r"[\w.`\x22\[\]]+";
    regex::Regex::new(&format!(
        r"(?i)(?:^|;)\s*(?:--[^\n]*\n\s*)*(?:(insert)\s+(?:or\s+\w+\s+)?into\s+{name}|(upsert)\s+(?:into\s+)?{name}|(update)\s+{name}\s+set\s|(delete)\s+(?:{name}(?:\s*,\s*{name})*\s+)?from\s+{name}|(merge)\s+into\s+{name}|(replace)\s+into\s+{name}|(drop)\s+{object}|(truncate)\s+(?:table\s+)?{name}|(alter)\s+{object}|(create)\s+(?:or\s+replace\s+|unique\s+)?{object}|(grant)\s+[\w\s,]+?\s+(?:on|to)\s|(revoke)\s+[\w\s,]+?\s+(?:on|from)\s|(rename)\s+table\s|(copy)\s+{name}\s+from\s|(exec|execute)\s*\(|(exec|execute)\s+(?:immediate\s|sp_|xp_)|(call)\s+{name}\s*\()"
    ))
    .expect("the statement pattern compiles")
});

/// The verbs `STATE_CHANGING_SQL` reads a statement by.
const STATEMENT_VERBS: &[&str] = &[
    "insert", "upsert", "update", "delete", "merge", "replace", "drop", "truncate", "alter",
    "create", "grant", "revoke", "rename", "copy", "exec", "call", "/*",
];

/// A SQL block comment.
static BLOCK_COMMENT: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"(?s)/\*.*?\*/").expect("the comment pattern compiles"));

/// Whether a text could hold a statement where one starts: it begins with a statement's verb,
/// or has a `;` or a `--` comment before one. Most arguments are neither, and skip the pattern.
fn may_hold_statement(text: &str) -> bool {
    let head = text.trim_start().as_bytes();
    STATEMENT_VERBS.iter().any(|v| {
        head.len() > v.len()
            && head
                .get(..v.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(v.as_bytes()))
    }) || text.contains(';')
        || text.contains("--")
}

/// Arguments (top-level strings, or strings in a top-level list) that carry a statement changing
/// state: the call acts whatever the tool's verb says, and deletes when the statement does.
pub fn state_changing_statements(args: &Params) -> Vec<Statement> {
    let mut out = Vec::new();
    for (param, value) in args {
        let items = value
            .as_array()
            .map_or(std::slice::from_ref(value), Vec::as_slice);
        let mut found: Option<Statement> = None;
        for text in items
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| may_hold_statement(t))
        {
            // A comment between two words of a statement (`DROP/**/TABLE`) reads as a space.
            let text = BLOCK_COMMENT.replace_all(text, " ");
            for caps in STATE_CHANGING_SQL.captures_iter(&text) {
                let Some(verb) = caps.iter().skip(1).flatten().next() else {
                    continue;
                };
                let verb = verb.as_str().to_uppercase();
                let destructive = matches!(verb.as_str(), "DROP" | "TRUNCATE" | "DELETE");
                if found.as_ref().is_none_or(|f| destructive && !f.destructive) {
                    found = Some(Statement {
                        param: param.clone(),
                        verb,
                        destructive,
                    });
                }
            }
        }
        out.extend(found);
    }
    out
}

/// Most nested sinks read from one call, and how deep into an argument they are looked for.
const MAX_NESTED_SINKS: usize = 64;
const MAX_NESTED_DEPTH: usize = 8;

/// Sinks inside an argument that is an object or a list of objects, found by the name of the
/// key that holds each value, as a parameter's name finds a top-level sink: `message.to`,
/// `config.url`, `requestBody.emailAddress`, `attendees.email`. Each as (path, value, kind). An
/// argument that is a sink itself is judged whole too: the object a call creates (a `hook`)
/// holds where it sends (`hook.config.url`).
pub fn nested_sinks(args: &Params) -> Vec<(String, Value, SinkKind)> {
    let mut out = Vec::new();
    for (arg, value) in args {
        if !(value.is_object() || value.is_array()) {
            continue;
        }
        let mut stack = vec![(arg.clone(), value, 0usize)];
        while let Some((path, v, depth)) = stack.pop() {
            if out.len() >= MAX_NESTED_SINKS || depth > MAX_NESTED_DEPTH {
                break;
            }
            match v {
                Value::Object(map) => {
                    for (k, inner) in map {
                        let at = format!("{path}.{k}");
                        let leaf = inner.is_string()
                            || inner.is_number()
                            || inner
                                .as_array()
                                .is_some_and(|a| a.iter().all(|x| !x.is_object()));
                        match sink_kind_of(k) {
                            Some(kind) if leaf => out.push((at, inner.clone(), kind)),
                            _ => stack.push((at, inner, depth + 1)),
                        }
                    }
                }
                Value::Array(items) => {
                    stack.extend(items.iter().map(|i| (path.clone(), i, depth + 1)));
                }
                _ => {}
            }
        }
    }
    out
}

/// A human-readable account of a tool's traits and where each came from (`warden tools explain`).
pub fn explain(tool: &Tool) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{} (upstream: {})", tool.name, tool.upstream);
    for t in Trait::ALL {
        let v = tool.trait_value(t);
        let _ = writeln!(
            s,
            "  {:<12} {:<5}  [{}] {}",
            t.as_str(),
            v.value,
            evidence_str(v.evidence),
            v.why
        );
    }
    let (integrity, _) = tool.result_label();
    let _ = writeln!(
        s,
        "  {:<12} {:<8} results are {:?}; {}",
        "returns",
        tool.returns.as_str(),
        integrity,
        tool.returns_why
    );
    if tool.sinks.is_empty() {
        let _ = writeln!(s, "  sinks        none");
    }
    for sink in &tool.sinks {
        let _ = writeln!(
            s,
            "  sink         {:<12} {:<10} [{}] {}",
            sink.param,
            sink.kind.as_str(),
            evidence_str(sink.evidence),
            sink.why
        );
    }
    s
}

fn evidence_str(e: Evidence) -> &'static str {
    match e {
        Evidence::Config => "config",
        Evidence::Annotation => "annotation",
        Evidence::Inferred => "inferred",
        Evidence::Default => "default",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(name: &str, props: Value) -> ToolSpec {
        ToolSpec {
            name: name.to_owned(),
            description: String::new(),
            input_schema: json!({"type": "object", "properties": props}),
            annotations: None,
        }
    }

    #[test]
    fn send_verb_makes_a_write_with_recipient_sink_and_free_text_body() {
        let t = resolve(
            &spec(
                "send_email",
                json!({"recipients": {"type": "array"}, "body": {"type": "string"}}),
            ),
            "mail",
            None,
        );
        assert!(t.write.value && !t.read.value && !t.destructive.value);
        assert_eq!(t.write.evidence, Evidence::Inferred);
        assert_eq!(
            t.sink("recipients").map(|s| s.kind),
            Some(SinkKind::Recipient)
        );
        assert!(t.sink("body").is_none());
    }

    #[test]
    fn the_id_of_a_message_names_the_message_not_a_party() {
        let t = resolve(
            &spec(
                "forward_email",
                json!({"email_id": {"type": "string"}, "to": {"type": "string"}}),
            ),
            "mail",
            None,
        );
        assert_eq!(
            t.sink("email_id").map(|s| s.kind),
            Some(SinkKind::Identifier)
        );
        assert_eq!(t.sink("to").map(|s| s.kind), Some(SinkKind::Recipient));
    }

    #[test]
    fn delete_verb_is_destructive() {
        let t = resolve(
            &spec("delete_file", json!({"file_id": {"type": "string"}})),
            "fs",
            None,
        );
        assert!(t.destructive.value && t.write.value);
        assert_eq!(t.sink("file_id").map(|s| s.kind), Some(SinkKind::Path));
    }

    #[test]
    fn get_verb_is_a_read_without_identifier_sinks() {
        let t = resolve(
            &spec(
                "get_hotels_prices",
                json!({"hotel_names": {"type": "array"}}),
            ),
            "t",
            None,
        );
        assert!(t.read.value && !t.write.value);
        assert!(t.sinks.is_empty());
    }

    #[test]
    fn write_selector_parameter_is_an_identifier_sink_but_times_are_not() {
        let t = resolve(
            &spec(
                "reserve_hotel",
                json!({"hotel": {"type": "string"}, "start_day": {"type": "string"}}),
            ),
            "t",
            None,
        );
        assert_eq!(t.sink("hotel").map(|s| s.kind), Some(SinkKind::Identifier));
        assert!(t.sink("start_day").is_none());
    }

    #[test]
    fn a_hint_that_raises_a_guard_or_agrees_counts_and_config_beats_it() {
        let mut s = spec("get_report", json!({}));
        s.annotations = Some(Annotations {
            read_only_hint: Some(true),
            destructive_hint: Some(true),
            ..Default::default()
        });
        let t = resolve(&s, "u", None);
        assert!(t.read.value && !t.write.value);
        assert_eq!(t.read.evidence, Evidence::Annotation);
        assert_eq!(t.write.evidence, Evidence::Annotation);
        let cfg = ToolConfig {
            write: Some(true),
            ..Default::default()
        };
        let t = resolve(&s, "u", Some(&cfg));
        assert!(t.write.value);
        assert_eq!(t.write.evidence, Evidence::Config);
        // `readOnlyHint: false` raises: a read verb's tool is guarded as a write.
        s.annotations = Some(Annotations {
            read_only_hint: Some(false),
            ..Default::default()
        });
        let t = resolve(&s, "u", None);
        assert!(t.write.value);
        assert_eq!(t.write.evidence, Evidence::Annotation);
    }

    #[test]
    fn a_hint_never_lowers_a_guard() {
        let mut s = spec("delete_repository", json!({"repo": {"type": "string"}}));
        s.annotations = Some(Annotations {
            read_only_hint: Some(true),
            destructive_hint: Some(false),
            open_world_hint: Some(false),
        });
        let t = resolve(&s, "code", None);
        assert!(t.write.value && t.destructive.value && t.open_world.value);
        assert_eq!(t.write.evidence, Evidence::Inferred);
        assert!(
            t.write.why.contains("readOnlyHint=true ignored"),
            "{}",
            t.write.why
        );
        assert!(t.sink("repo").is_some());
        // An unknown verb stays a write whatever the server says.
        let mut s = spec("frobnicate", json!({}));
        s.annotations = Some(Annotations {
            read_only_hint: Some(true),
            ..Default::default()
        });
        let t = resolve(&s, "u", None);
        assert!(t.write.value && t.read.value);
        assert_eq!(t.write.evidence, Evidence::Default);
    }

    #[test]
    fn a_read_that_acts_as_it_fetches_is_also_a_write() {
        let mut browse = spec("browse_page", json!({"url": {"type": "string"}}));
        browse.description = "Opens a URL; use it to read a page or to click a link.".into();
        let t = resolve(&browse, "web", None);
        assert!(t.read.value && t.write.value, "{:?}", t.write);
        assert!(t.write.why.contains("`click`"), "{}", t.write.why);
        assert_eq!(t.sink("url").map(|s| s.kind), Some(SinkKind::Url));
        let t = resolve(
            &spec("download_attachment", json!({"url": {}})),
            "web",
            None,
        );
        assert!(t.read.value && t.write.value);
        // Plain navigation is a read.
        let mut fetch = spec("fetch_page", json!({"url": {"type": "string"}}));
        fetch.description = "Returns the text of the page at a URL.".into();
        let t = resolve(&fetch, "web", None);
        assert!(t.read.value && !t.write.value);
        // A read verb after the object still makes a read.
        let t = resolve(&spec("resources/read", json!({})), "mcp", None);
        assert!(t.read.value && !t.write.value);
    }

    #[test]
    fn a_removal_that_an_add_tool_puts_back_is_not_destructive() {
        let specs = [
            spec("cart_remove_item", json!({"item_id": {}})),
            spec("cart_add_item", json!({"item_id": {}})),
            spec("remove_user_from_team", json!({"user": {}})),
            spec("add_user_to_team", json!({"user": {}})),
            spec("remove_file", json!({"path": {}})),
            spec("delete_item", json!({"item_id": {}})),
            spec("add_item", json!({"item_id": {}})),
        ];
        let tools = resolve_set(&specs, "shop", |_| None);
        let by = |n: &str| tools.iter().find(|t| t.name == n).expect("resolved");
        for undone in ["cart_remove_item", "remove_user_from_team"] {
            let t = by(undone);
            assert!(
                !t.destructive.value && t.write.value,
                "{undone}: {:?}",
                t.destructive
            );
            assert!(
                t.destructive.why.contains("puts back"),
                "{}",
                t.destructive.why
            );
        }
        // Nothing puts a removed file back; a deletion is never undone by an add.
        assert!(by("remove_file").destructive.value);
        assert!(by("delete_item").destructive.value);
        // The operator's word still wins.
        let cfg = ToolConfig {
            destructive: Some(true),
            ..Default::default()
        };
        let tools = resolve_set(&specs, "shop", |n| {
            (n == "cart_remove_item").then_some(&cfg)
        });
        assert!(tools[0].destructive.value);
    }

    #[test]
    fn a_handle_is_a_party_when_the_call_grants_to_it_not_when_it_signs_in_as_it() {
        let props = json!({"username": {"type": "string"}, "repo": {"type": "string"}});
        let grant = resolve(&spec("add_collaborator", props.clone()), "m", None);
        assert_eq!(
            grant.sink("username").map(|s| s.kind),
            Some(SinkKind::Recipient)
        );
        let login = resolve(&spec("login_shop_account", props), "m", None);
        assert_ne!(
            login.sink("username").map(|s| s.kind),
            Some(SinkKind::Recipient)
        );
    }

    #[test]
    fn sinks_inside_objects_are_found_by_their_keys() {
        let args: Params = [(
            "message".to_owned(),
            json!({"to": ["a@b.test"], "body": "hi", "meta": {"webhook_url": "https://h.test/x"}, "attendees": [{"email": "c@d.test"}]}),
        )]
        .into_iter()
        .collect();
        let mut found: Vec<(String, SinkKind)> = nested_sinks(&args)
            .into_iter()
            .map(|(p, _, k)| (p, k))
            .collect();
        found.sort();
        assert_eq!(
            found,
            [
                ("message.attendees.email".to_owned(), SinkKind::Recipient),
                ("message.meta.webhook_url".to_owned(), SinkKind::Url),
                ("message.to".to_owned(), SinkKind::Recipient),
            ]
        );
    }

    #[test]
    fn a_spending_limit_is_an_amount_even_as_a_number() {
        let t = resolve(
            &spec(
                "update_card_settings",
                json!({"card_id": {"type": "string"}, "daily_limit": {"type": "number"}, "transfer_cap": {"type": "integer"}}),
            ),
            "bank",
            None,
        );
        assert_eq!(
            t.sink("daily_limit").map(|s| s.kind),
            Some(SinkKind::Amount)
        );
        assert_eq!(
            t.sink("transfer_cap").map(|s| s.kind),
            Some(SinkKind::Amount)
        );
    }

    #[test]
    fn unknown_verb_is_assumed_to_write() {
        let t = resolve(&spec("frobnicate", json!({})), "u", None);
        assert!(t.write.value);
        assert_eq!(t.write.evidence, Evidence::Default);
    }

    #[test]
    fn inbox_reader_is_open_world_and_current_day_is_not() {
        assert!(
            resolve(&spec("get_received_emails", json!({})), "u", None)
                .open_world
                .value
        );
        assert!(
            !resolve(&spec("get_current_day", json!({})), "u", None)
                .open_world
                .value
        );
    }

    #[test]
    fn config_sinks_and_plain_override_inference() {
        let cfg = ToolConfig {
            sinks: BTreeMap::from([("memo".to_owned(), SinkKind::Account)]),
            plain: vec!["recipients".to_owned()],
            ..Default::default()
        };
        let t = resolve(
            &spec("send_money", json!({"recipients": {}, "memo": {}})),
            "bank",
            Some(&cfg),
        );
        assert!(t.sink("recipients").is_none());
        assert_eq!(
            t.sink("memo").map(|s| (s.kind, s.evidence)),
            Some((SinkKind::Account, Evidence::Config))
        );
    }

    #[test]
    fn a_one_time_code_selects_nothing_but_a_token_does() {
        let t = resolve(
            &spec(
                "verify_payment",
                json!({"otp": {"type": "string"}, "verificationCode": {"type": "string"},
                       "auth_token": {"type": "string"}, "order_id": {"type": "string"}}),
            ),
            "shop",
            None,
        );
        assert!(t.sink("otp").is_none() && t.sink("verificationCode").is_none());
        assert_eq!(
            t.sink("auth_token").map(|s| s.kind),
            Some(SinkKind::Identifier)
        );
        assert_eq!(
            t.sink("order_id").map(|s| s.kind),
            Some(SinkKind::Identifier)
        );
    }

    #[test]
    fn camel_case_names_split_into_words() {
        assert_eq!(words("sendEmailNow"), vec!["send", "email", "now"]);
        assert_eq!(words("mail.send-all_x"), vec!["mail", "send", "all", "x"]);
    }

    #[test]
    fn explain_names_the_evidence_of_each_trait() {
        let text = explain(&resolve(
            &spec("send_email", json!({"to": {}})),
            "mail",
            None,
        ));
        assert!(
            text.contains("write        true   [inferred] name `send_email` has the verb `send`"),
            "{text}"
        );
        assert!(text.contains("sink         to"), "{text}");
    }

    #[test]
    fn a_statement_that_changes_state_is_read_where_a_statement_starts() {
        let statements = |v: Value| {
            let args: Params = serde_json::from_value(json!({ "q": v })).expect("an object");
            state_changing_statements(&args)
                .into_iter()
                .map(|s| (s.verb, s.destructive))
                .collect::<Vec<_>>()
        };
        let one = |verb: &str, destructive| vec![(verb.to_owned(), destructive)];
        assert_eq!(
            statements(json!("DROP TABLE audit_trail;")),
            one("DROP", true)
        );
        assert_eq!(
            statements(json!("  truncate orders")),
            one("TRUNCATE", true)
        );
        assert_eq!(
            statements(json!("delete from t where id = 3")),
            one("DELETE", true)
        );
        assert_eq!(
            statements(json!("SELECT 1; UPDATE staff SET role = 'owner'")),
            one("UPDATE", false)
        );
        assert_eq!(
            statements(json!(["SELECT 1", "-- tidy\nINSERT INTO log VALUES (1)"])),
            one("INSERT", false)
        );
        assert_eq!(
            statements(json!("GRANT ALL ON db TO mallory")),
            one("GRANT", false)
        );
        // Comments between words, a MySQL multi-table delete, procedures and dynamic SQL.
        assert_eq!(statements(json!("DROP/**/TABLE audit")), one("DROP", true));
        assert_eq!(
            statements(json!(
                "/* tidy */ DELETE t1 FROM t1 JOIN t2 ON t1.id = t2.id"
            )),
            one("DELETE", true)
        );
        assert_eq!(statements(json!("CALL purge_all()")), one("CALL", false));
        assert_eq!(
            statements(json!("EXEC sp_rename 'a', 'b'")),
            one("EXEC", false)
        );
        assert_eq!(
            statements(json!("EXECUTE('DR' + 'OP TABLE x')")),
            one("EXECUTE", false)
        );
        // The most harmful statement an argument carries decides.
        assert_eq!(
            statements(json!("INSERT INTO a VALUES (1); DROP VIEW v")),
            one("DROP", true)
        );
        // Reads, and English that uses the same verbs, are no statements.
        for text in [
            "SELECT name FROM customers WHERE note = 'drop table later'",
            "update your browser",
            "how to drop a table from a wedding plan",
            "create a summary of the tickets",
            "rate; update",
            "Execute the plan we agreed on",
            "Exec summary for Q3",
            "Call Dora about the offsite",
        ] {
            assert!(statements(json!(text)).is_empty(), "{text}");
        }
    }
}
