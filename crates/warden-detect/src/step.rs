//! The detector's input: the steps of a session (a call with what is known about it) and the
//! key a baseline is learned under.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Whose behaviour a session is: the baseline is learned per (agent, task profile).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionKey {
    pub agent: String,
    /// The task profile; `""` when the session has none.
    pub profile: String,
}

impl SessionKey {
    pub fn new(agent: impl Into<String>, profile: impl Into<String>) -> SessionKey {
        SessionKey {
            agent: agent.into(),
            profile: profile.into(),
        }
    }
}

/// What a tool does to the world, as far as the caller knows (from the tool's traits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Read,
    Write,
    Destructive,
    #[default]
    Unknown,
}

impl Effect {
    /// A guess from the tool's name alone (its leading verb), for callers without tool traits.
    pub fn guess(tool: &str) -> Effect {
        let name = tool.to_ascii_lowercase();
        let verb = name.split(['_', '-', '.', '/']).next().unwrap_or("");
        match verb {
            "delete" | "remove" | "drop" | "destroy" | "erase" | "purge" | "wipe" | "revoke"
            | "cancel" | "truncate" | "kill" => Effect::Destructive,
            "send" | "create" | "reserve" | "book" | "append" | "update" | "share" | "add"
            | "reschedule" | "post" | "put" | "write" | "set" | "move" | "rename" | "pay"
            | "transfer" | "schedule" | "invite" | "upload" | "publish" | "submit" | "edit"
            | "insert" | "patch" | "forward" | "reply" | "grant" | "execute" | "run" => {
                Effect::Write
            }
            "get" | "search" | "list" | "read" | "fetch" | "find" | "check" | "query" | "show"
            | "lookup" | "browse" | "view" | "download" | "describe" => Effect::Read,
            _ => Effect::Unknown,
        }
    }

    pub fn writes(self) -> bool {
        matches!(self, Effect::Write | Effect::Destructive)
    }
}

/// One call of a session, with what the gateway knew about it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub tool: String,
    pub args: Map<String, Value>,
    /// The gateway's verdict for the call (`"allow"`, `"hold"`, `"deny"`), if it decided one.
    #[serde(default)]
    pub verdict: Option<String>,
    /// The call's result came from an open-world read: content nobody vouches for.
    #[serde(default)]
    pub untrusted_read: bool,
    /// When the call was made (milliseconds since the Unix epoch), if known.
    #[serde(default)]
    pub time_ms: Option<u64>,
    #[serde(default)]
    pub effect: Effect,
}

impl Step {
    /// A call of `tool` with `args`, its effect guessed from the name.
    pub fn call(tool: impl Into<String>, args: Map<String, Value>) -> Step {
        let tool = tool.into();
        Step {
            effect: Effect::guess(&tool),
            tool,
            args,
            ..Step::default()
        }
    }

    pub(crate) fn denied(&self) -> bool {
        self.verdict.as_deref() == Some("deny")
    }
}
