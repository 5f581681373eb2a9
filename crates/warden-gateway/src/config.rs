//! Warden's configuration file (`warden.toml`): where it listens and keeps state, which policy
//! files and task profiles apply, what the operator says about tools, and the agents' API keys.
//! Every field has a default, so an empty file (or none) is a working configuration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use warden_policy::{PolicyEngine, PolicyError, PolicySource, TaskProfile, ToolConfig, ToolSpec};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub provenance: ProvenanceConfig,
    /// The tamper-evident audit log (under the data dir).
    #[serde(default)]
    pub audit: warden_audit::AuditConfig,
    /// Where sessions, approvals and the audit log live: SQLite in the data dir (no `url`, the
    /// default), or one PostgreSQL database a fleet of replicas shares.
    #[serde(default)]
    pub store: warden_pg::StoreConfig,
    /// Behavioural anomaly detection.
    #[serde(default)]
    pub detect: DetectConfig,
    /// Task profiles by name.
    #[serde(default)]
    pub profiles: BTreeMap<String, TaskProfile>,
    /// What the operator says about tools, by tool name.
    #[serde(default)]
    pub tools: BTreeMap<String, ToolEntry>,
    /// API keys agents authenticate with. None: the guard API is open, and only on loopback.
    #[serde(default)]
    pub api_keys: Vec<ApiKey>,
    /// The MCP front of `warden serve` (`/mcp`): how it treats held calls and hosts.
    #[serde(default)]
    pub mcp: McpConfig,
    /// The MCP servers `warden serve` fronts at `/mcp`, their tools named `<upstream>__<tool>`.
    #[serde(default)]
    pub upstreams: Vec<UpstreamConfig>,
    /// OpenTelemetry spans over OTLP/HTTP; off unless `endpoint` is set.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// The directory relative paths in this file are resolved against (the file's own directory).
    #[serde(skip)]
    pub base_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_body_limit")]
    pub max_body_bytes: usize,
    /// Sessions kept in memory; idle ones past this are dropped and replayed from the store
    /// when next used.
    #[serde(default = "default_live_sessions")]
    pub max_live_sessions: usize,
    /// Shadow mode: decide and record every call, but allow them all (to try a policy on live
    /// traffic before enforcing it).
    #[serde(default)]
    pub shadow: bool,
    /// A held call nobody decided within this many seconds expires (it is refused), even when
    /// nobody waits for it any more: an agent that stopped polling, a `warden mcp` that was
    /// killed. `warden serve` sweeps once a minute.
    #[serde(default = "default_approval_expiry")]
    pub approval_expiry_secs: u64,
    /// A connection that has not sent a whole request head (start line and headers) this many
    /// seconds after it opened, or after its previous answer, is closed.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// A request whose whole body has not arrived this many seconds after its head is answered
    /// 408.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: u64,
    /// Connections served at once; past it, new ones wait in the listen queue until one closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            data_dir: default_data_dir(),
            max_body_bytes: default_body_limit(),
            max_live_sessions: default_live_sessions(),
            shadow: false,
            approval_expiry_secs: default_approval_expiry(),
            header_timeout_secs: default_header_timeout(),
            body_timeout_secs: default_body_timeout(),
            max_connections: default_max_connections(),
        }
    }
}

fn default_header_timeout() -> u64 {
    20
}
fn default_body_timeout() -> u64 {
    30
}
/// Half of a common 1024-descriptor limit: the rest is for the stores, the audit log and the
/// upstreams' pipes.
fn default_max_connections() -> usize {
    512
}

fn default_approval_expiry() -> u64 {
    24 * 60 * 60
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8787))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from(".warden")
}
fn default_live_sessions() -> usize {
    10_000
}
fn default_body_limit() -> usize {
    4 * 1024 * 1024
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Apply Warden's built-in baseline policy.
    #[serde(default = "yes")]
    pub baseline: bool,
    /// Cedar policy files (`.cedar`) or directories of them.
    #[serde(default)]
    pub files: Vec<PathBuf>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            baseline: true,
            files: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenanceConfig {
    /// Distinct values kept per session before the oldest are evicted.
    #[serde(default = "default_max_values")]
    pub max_values: usize,
}

impl Default for ProvenanceConfig {
    fn default() -> Self {
        ProvenanceConfig {
            max_values: default_max_values(),
        }
    }
}

fn default_max_values() -> usize {
    warden_provenance::IndexConfig::default().max_values
}

/// `[detect]`: the behavioural baseline that scores every call (`context.anomaly`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A call scoring at least this raises an alert in the audit log.
    #[serde(default = "default_alert")]
    pub alert_threshold: f64,
    /// The model file, relative to the data dir; loaded on start, saved on shutdown.
    #[serde(default = "default_model")]
    pub model: PathBuf,
    /// The detector's own knobs (rule weights, cold-start thresholds).
    #[serde(default)]
    pub tuning: warden_detect::Config,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            enabled: true,
            alert_threshold: default_alert(),
            model: default_model(),
            tuning: warden_detect::Config::default(),
        }
    }
}

fn default_alert() -> f64 {
    0.9
}
fn default_model() -> PathBuf {
    PathBuf::from("detect.json")
}

/// `[telemetry]`: OpenTelemetry spans (an `invoke_agent` span per session, an `execute_tool`
/// span per decided call) sent over OTLP/HTTP in protobuf. Nothing is sent without `endpoint`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP base URL, e.g. `http://127.0.0.1:4318` (`/v1/traces` is added
    /// unless the URL already ends with it); `https://` or `http://`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// `service.name` of the spans' resource.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Extra HTTP headers on every export (e.g. an API key a collector wants).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// PEM certificates trusted for an `https://` endpoint besides the platform's roots.
    /// Relative to the config file.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How long one export may take before it is dropped, in milliseconds.
    #[serde(default = "default_export_timeout")]
    pub timeout_ms: u64,
    /// How long spans wait to be batched, in milliseconds.
    #[serde(default = "default_batch_delay")]
    pub batch_delay_ms: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            endpoint: None,
            service_name: default_service_name(),
            headers: BTreeMap::new(),
            ca_file: None,
            timeout_ms: default_export_timeout(),
            batch_delay_ms: default_batch_delay(),
        }
    }
}

fn default_service_name() -> String {
    "warden".into()
}
fn default_export_timeout() -> u64 {
    10_000
}
fn default_batch_delay() -> u64 {
    1_000
}

/// A tool entry: its description and schema (for tools Warden cannot list itself, like those an
/// agent framework runs) and the operator's statements about its traits.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolEntry {
    #[serde(default)]
    pub upstream: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Parameter names, when no JSON schema is given.
    #[serde(default)]
    pub params: Vec<String>,
    /// The digest of the definition the operator reviewed (`sha256:…`, as `warden tools pins`
    /// prints it, e.g. from a reviewed `tools/list`): the tool is pinned to it from the start,
    /// and any other definition its server lists is a change whose calls are held. Only the
    /// config changes such a pin (`warden tools accept` does not).
    #[serde(default)]
    pub pin: Option<String>,
    #[serde(flatten)]
    pub traits: ToolConfig,
}

impl ToolEntry {
    pub fn spec(&self, name: &str) -> ToolSpec {
        let properties: serde_json::Map<String, serde_json::Value> = self
            .params
            .iter()
            .map(|p| (p.clone(), serde_json::json!({})))
            .collect();
        ToolSpec {
            name: name.to_owned(),
            description: self.description.clone().unwrap_or_default(),
            input_schema: serde_json::json!({"type": "object", "properties": properties}),
            annotations: None,
        }
    }
}

/// `[mcp]`: the streamable HTTP front at `/mcp`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpConfig {
    /// How long a held call waits for a person's approval, in seconds; 0 refuses it at once.
    #[serde(default = "default_hold_timeout")]
    pub hold_timeout_secs: u64,
    /// Hide from `tools/list` the tools the session's profile can never use.
    #[serde(default = "yes")]
    pub hide_unusable_tools: bool,
    /// `Host` headers `/mcp` accepts (DNS-rebinding protection). Empty: loopback names when
    /// listening on loopback, else any host (API keys are required then).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Who releases a held call: `"approver"` (default) or `"user"`, the session's user asked
    /// in their MCP client (elicitation), for sessions whose profile does not say otherwise.
    #[serde(default)]
    pub confirm: warden_policy::Confirm,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            hold_timeout_secs: default_hold_timeout(),
            hide_unusable_tools: true,
            allowed_hosts: Vec::new(),
            confirm: warden_policy::Confirm::Approver,
        }
    }
}

impl Config {
    /// Who releases a call held in a session with this profile: the profile's `confirm`, else
    /// `[mcp] confirm`.
    pub fn confirm_for(&self, profile: Option<&str>) -> warden_policy::Confirm {
        profile
            .and_then(|p| self.profiles.get(p))
            .and_then(|p| p.confirm)
            .unwrap_or(self.mcp.confirm)
    }
}

fn default_hold_timeout() -> u64 {
    120
}

/// `[[upstreams]]`: an MCP server behind `/mcp`: a `command` run as a child process on first use
/// (and again after it exits), or a remote server's streamable HTTP endpoint at `url` (connected
/// on first use, and again after the connection is lost).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Its namespace: its tools are listed as `<name>__<tool>`. Letters, digits, `-` and single
    /// `_`; never `__`.
    pub name: String,
    /// The program and its arguments (run without a shell).
    #[serde(default)]
    pub command: Vec<String>,
    /// Environment variables set for the `command` (on top of Warden's own).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// A remote MCP server's streamable HTTP endpoint (`http://host:port/mcp`), instead of a
    /// `command`.
    #[serde(default)]
    pub url: Option<String>,
    /// HTTP headers sent with every request to `url` (not `Authorization`: credentials come
    /// from `bearer_token_env`, `bearer_token_file` or `oauth`, never inline).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// PEM certificates trusted for an `https://` `url`, besides the platform's roots (a private
    /// CA, a self-signed server). Relative to the config file.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The environment variable that holds the bearer token Warden sends to this upstream.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// The file that holds the bearer token Warden sends to this upstream (read at start).
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// OAuth 2.1 client credentials: Warden obtains its own access token for this upstream,
    /// caches it and fetches a new one before it expires.
    #[serde(default)]
    pub oauth: Option<OAuthConfig>,
    /// How long any request to this upstream may take, in seconds, before the agent is told it
    /// timed out (the MCP reference SDKs wait 60 s); a merged `tools/list` waits at most 10 s
    /// (or this, if shorter) and is answered without this upstream's tools past it. An upstream
    /// whose call timed out and that then does not answer a ping is dropped and connected
    /// afresh on the next call.
    #[serde(default = "default_call_timeout")]
    pub timeout_secs: u64,
}

fn default_call_timeout() -> u64 {
    60
}

/// `[upstreams.oauth]`: the client-credentials grant (RFC 6749 §4.4) Warden uses to obtain its
/// own access token for a remote MCP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    /// The authorization server's token endpoint.
    pub token_url: String,
    pub client_id: String,
    /// The environment variable that holds the client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// The file that holds the client secret (read at start). Relative to the config file.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// The scope to ask for, if the server wants one.
    #[serde(default)]
    pub scope: Option<String>,
    /// The resource the token is for (RFC 8707); default: the upstream's `url`.
    #[serde(default)]
    pub resource: Option<String>,
}

impl UpstreamConfig {
    fn has_credential(&self) -> bool {
        self.bearer_token_env.is_some() || self.bearer_token_file.is_some() || self.oauth.is_some()
    }

    /// At most one credential, each from one place, its secret there now (a missing variable
    /// or file fails the start, not the first call).
    fn validate_credential(&self) -> Result<(), ConfigError> {
        let name = &self.name;
        let invalid =
            |what: String| Err(ConfigError::Invalid(format!("upstream `{name}`: {what}")));
        let given = [
            self.bearer_token_env.is_some(),
            self.bearer_token_file.is_some(),
            self.oauth.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return invalid(
                "give one credential: `bearer_token_env`, `bearer_token_file` or `oauth`".into(),
            );
        }
        if let Some(oauth) = &self.oauth {
            if !(oauth.token_url.starts_with("https://") || oauth.token_url.starts_with("http://"))
            {
                return invalid(format!(
                    "`oauth.token_url` must start with https:// or http://, not `{}`",
                    oauth.token_url
                ));
            }
            if oauth.client_id.is_empty() {
                return invalid("`oauth.client_id` is empty".into());
            }
            if oauth.client_secret_env.is_some() == oauth.client_secret_file.is_some() {
                return invalid(
                    "`oauth` needs one of `client_secret_env` and `client_secret_file` (a secret \
                     never goes inline)"
                        .into(),
                );
            }
        }
        let secret = match &self.oauth {
            Some(o) => crate::outbound::read_secret(
                "the OAuth client secret",
                o.client_secret_env.as_deref(),
                o.client_secret_file.as_deref(),
            ),
            None if self.has_credential() => crate::outbound::read_secret(
                "the bearer token",
                self.bearer_token_env.as_deref(),
                self.bearer_token_file.as_deref(),
            ),
            None => Ok(String::new()),
        };
        if let Err(e) = secret {
            return invalid(e);
        }
        if let Some(ca) = &self.ca_file {
            if let Err(e) = crate::outbound::read_roots(ca) {
                return invalid(e);
            }
        }
        Ok(())
    }

    /// An upstream run as a child process, with the defaults for everything else.
    pub fn child(name: &str, command: Vec<String>) -> UpstreamConfig {
        UpstreamConfig {
            name: name.to_owned(),
            command,
            env: BTreeMap::new(),
            url: None,
            headers: BTreeMap::new(),
            ca_file: None,
            bearer_token_env: None,
            bearer_token_file: None,
            oauth: None,
            timeout_secs: default_call_timeout(),
        }
    }

    /// Exactly one of `command` and `url`, each with only its own settings.
    fn validate_endpoint(&self) -> Result<(), ConfigError> {
        let name = &self.name;
        let invalid =
            |what: String| Err(ConfigError::Invalid(format!("upstream `{name}`: {what}")));
        match (&self.url, self.command.is_empty()) {
            (Some(_), false) => invalid("give either `command` or `url`, not both".into()),
            (None, true) => invalid(
                "give a `command` (e.g. [\"npx\", \"-y\", \"@modelcontextprotocol/server-filesystem\", \
                 \"/tmp\"]) or the `url` of a streamable HTTP server"
                    .into(),
            ),
            (None, false) if self.command[0].trim().is_empty() => {
                invalid("`command` must name a program".into())
            }
            (None, false) if !self.headers.is_empty() => {
                invalid("`headers` are for a `url` upstream; a `command` takes `env`".into())
            }
            (None, false) if self.ca_file.is_some() || self.has_credential() => invalid(
                "`ca_file`, `bearer_token_env`, `bearer_token_file` and `oauth` are for a `url` \
                 upstream; a `command` takes `env`"
                    .into(),
            ),
            _ if self.timeout_secs == 0 => invalid("`timeout_secs` must be at least 1".into()),
            (None, false) => Ok(()),
            (Some(url), true) => {
                if !self.env.is_empty() {
                    return invalid("`env` is for a `command` upstream".into());
                }
                let Some(rest) = url
                    .strip_prefix("https://")
                    .or_else(|| url.strip_prefix("http://"))
                else {
                    return invalid(format!(
                        "`url` must start with https:// or http://, not `{url}`"
                    ));
                };
                if self.ca_file.is_some() && !url.starts_with("https://") {
                    return invalid(format!("`ca_file` is for an https:// `url`, not `{url}`"));
                }
                self.validate_credential()?;
                if rest.is_empty() || rest.starts_with('/') {
                    return invalid(format!("`url` names no host: `{url}`"));
                }
                for (header, value) in &self.headers {
                    let ok = !header.is_empty()
                        && header.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
                        && value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
                    if !ok {
                        return invalid(format!("header `{header}` is not a valid HTTP header"));
                    }
                    if header.eq_ignore_ascii_case("authorization") {
                        return invalid(
                            "a credential does not go inline in `headers`: put the token in an \
                             environment variable or a file and name it with `bearer_token_env` \
                             or `bearer_token_file` (or use `[upstreams.oauth]`)"
                                .into(),
                        );
                    }
                }
                Ok(())
            }
        }
    }
}

/// Between an upstream's name and its tool's name in `tools/list` and `tools/call`.
pub const TOOL_SEPARATOR: &str = "__";

/// An agent's API key and what sessions it may open.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// The key's name; also the default agent id for its sessions.
    pub name: String,
    /// Hex SHA-256 of the key. Generate one with `warden keys new`.
    pub sha256: String,
    /// Agents this key may act as; default: just `name`.
    #[serde(default)]
    pub agents: Vec<String>,
    /// Principals it may open sessions for; `"*"` for any.
    #[serde(default)]
    pub principals: Vec<String>,
    /// Task profiles it may open sessions with; `"*"` for any, `""` for none.
    #[serde(default)]
    pub profiles: Vec<String>,
    /// What else the key may do: `approver` and `admin` keys may list and decide approvals;
    /// `viewer`, `approver` and `admin` keys are people's, and sign in to the dashboard.
    #[serde(default)]
    pub role: Role,
}

/// An API key's role.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Opens sessions and has its calls decided.
    #[default]
    Agent,
    /// Also lists held calls and approves or denies them.
    Approver,
    Admin,
    /// A person who may sign in to the dashboard and look, but not decide held calls.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Approver => "approver",
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    /// Keys for people: they may sign in to the dashboard. Agent keys may not.
    pub fn may_sign_in(self) -> bool {
        !matches!(self, Role::Agent)
    }

    pub fn may_decide_approvals(self) -> bool {
        matches!(self, Role::Approver | Role::Admin)
    }
}

fn allows(list: &[String], value: &str) -> bool {
    list.iter().any(|v| v == "*" || v == value)
}

impl ApiKey {
    pub fn allows_agent(&self, agent: &str) -> bool {
        if self.agents.is_empty() {
            agent == self.name
        } else {
            allows(&self.agents, agent)
        }
    }
    pub fn allows_principal(&self, principal: &str) -> bool {
        allows(&self.principals, principal)
    }
    pub fn allows_profile(&self, profile: Option<&str>) -> bool {
        allows(&self.profiles, profile.unwrap_or(""))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {message}")]
    Read { file: String, message: String },
    #[error("{file}:{line}:{col}: {message}")]
    Syntax {
        file: String,
        line: usize,
        col: usize,
        message: String,
    },
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("{0}")]
    Invalid(String),
}

impl Config {
    /// Read a config file; errors carry file:line:col.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            file: file.clone(),
            message: format!("cannot read: {e}"),
        })?;
        let mut config = Config::parse(&text, &file)?;
        config.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        // Files an upstream or the exporter reads are the config's own, wherever Warden runs.
        let base = config.base_dir.clone();
        let at = |p: &mut Option<PathBuf>| {
            if let Some(p) = p.as_mut().filter(|p| p.is_relative()) {
                *p = base.join(&*p);
            }
        };
        for up in &mut config.upstreams {
            at(&mut up.ca_file);
            at(&mut up.bearer_token_file);
            if let Some(oauth) = up.oauth.as_mut() {
                at(&mut oauth.client_secret_file);
            }
        }
        at(&mut config.telemetry.ca_file);
        Ok(config)
    }

    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        toml::from_str::<Config>(text).map_err(|e| {
            let (line, col) = e
                .span()
                .map(|s| warden_policy::line_col(text, s.start))
                .unwrap_or((1, 1));
            ConfigError::Syntax {
                file: file.to_owned(),
                line,
                col,
                message: e.message().to_owned(),
            }
        })
    }

    fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.resolve(&self.server.data_dir)
    }

    /// The policy files named by the config, read; directories give their `.cedar` files in
    /// name order.
    pub fn policy_files(&self) -> Result<Vec<PolicySource>, ConfigError> {
        let mut out = Vec::new();
        for entry in &self.policy.files {
            let path = self.resolve(entry);
            let read_err = |e: std::io::Error, p: &Path| ConfigError::Read {
                file: p.display().to_string(),
                message: format!("cannot read policy: {e}"),
            };
            let mut files = Vec::new();
            if path.is_dir() {
                for f in std::fs::read_dir(&path).map_err(|e| read_err(e, &path))? {
                    let f = f.map_err(|e| read_err(e, &path))?.path();
                    if f.extension().is_some_and(|x| x == "cedar") {
                        files.push(f);
                    }
                }
                files.sort();
            } else {
                files.push(path);
            }
            for f in files {
                let text = std::fs::read_to_string(&f).map_err(|e| read_err(e, &f))?;
                out.push(PolicySource {
                    name: f.display().to_string(),
                    text,
                });
            }
        }
        Ok(out)
    }

    /// Compile profiles and load every policy: the engine this config runs with.
    pub fn engine(&self) -> Result<PolicyEngine, ConfigError> {
        let sources = warden_policy::policy_sources(
            self.policy.baseline,
            &self.profiles,
            self.policy_files()?,
        )?;
        Ok(PolicyEngine::load(&sources)?)
    }

    /// Checks that need more than one section.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.api_keys.is_empty() && !self.server.listen.ip().is_loopback() {
            return Err(ConfigError::Invalid(format!(
                "server.listen = {} is not a loopback address but no [[api_keys]] are configured: \
                 anyone who can reach it could open sessions. Add api_keys or listen on 127.0.0.1",
                self.server.listen
            )));
        }
        let mut names = std::collections::BTreeSet::new();
        for up in &self.upstreams {
            let name = &up.name;
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !name.contains(TOOL_SEPARATOR)
                && !name.starts_with('_')
                && !name.ends_with('_');
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "upstream `{name}`: a name is letters, digits, `-` and single `_` (not at \
                     either end), since its tools are listed as `<name>{TOOL_SEPARATOR}<tool>`"
                )));
            }
            if !names.insert(name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "upstream `{name}` is declared twice"
                )));
            }
            up.validate_endpoint()?;
        }
        let server = &self.server;
        if server.header_timeout_secs == 0 || server.body_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "server.header_timeout_secs and server.body_timeout_secs must be at least 1".into(),
            ));
        }
        if server.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "server.max_connections must be at least 1".into(),
            ));
        }
        if self.server.approval_expiry_secs == 0 {
            return Err(ConfigError::Invalid(
                "server.approval_expiry_secs must be at least 1 (a held call needs time for a \
                 person)"
                    .into(),
            ));
        }
        for key in &self.api_keys {
            let ok = key.sha256.len() == 64 && key.sha256.chars().all(|c| c.is_ascii_hexdigit());
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "api key `{}`: sha256 must be 64 hex digits (make one with `warden keys new`)",
                    key.name
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_a_working_config() {
        let c = Config::parse("", "warden.toml").expect("parses");
        assert_eq!(c.server.listen, default_listen());
        assert!(c.policy.baseline);
        c.validate().expect("valid");
        assert!(c.engine().expect("engine").len() >= 4);
    }

    #[test]
    fn unknown_field_error_has_line_and_column() {
        let err = Config::parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n", "w.toml")
            .expect_err("fails");
        let text = err.to_string();
        assert!(
            text.starts_with("w.toml:3:1: unknown field `lisen`"),
            "{text}"
        );
    }

    #[test]
    fn a_key_is_an_agent_unless_its_role_says_otherwise() {
        let text = "[[api_keys]]\nname = \"bot\"\nsha256 = \"00\"\n\n\
                    [[api_keys]]\nname = \"alice\"\nsha256 = \"00\"\nrole = \"approver\"\n\n\
                    [[api_keys]]\nname = \"vic\"\nsha256 = \"00\"\nrole = \"viewer\"\n";
        let c = Config::parse(text, "w.toml").expect("parses");
        assert_eq!(c.api_keys[0].role, Role::Agent);
        assert_eq!(c.api_keys[1].role, Role::Approver);
        assert_eq!(c.api_keys[2].role, Role::Viewer);
        assert!(!Role::Agent.may_sign_in() && Role::Viewer.may_sign_in());
        assert!(!Role::Viewer.may_decide_approvals());
        let err = Config::parse(
            "[[api_keys]]\nname = \"x\"\nsha256 = \"00\"\nrole = \"auditor\"\n",
            "w.toml",
        )
        .expect_err("unknown role");
        assert!(err.to_string().starts_with("w.toml:4:"), "{err}");
    }

    #[test]
    fn upstreams_parse_and_bad_names_are_refused() {
        let text = "[[upstreams]]\nname = \"files\"\ncommand = [\"npx\", \"server\", \"/tmp/x\"]\n\
                    env = { A = \"1\" }\n\n[[upstreams]]\nname = \"notes-2\"\ncommand = [\"srv\"]\n";
        let c = Config::parse(text, "w.toml").expect("parses");
        c.validate().expect("valid");
        assert_eq!(c.upstreams[0].command, ["npx", "server", "/tmp/x"]);
        assert_eq!(c.upstreams[0].env["A"], "1");
        assert_eq!(c.mcp.hold_timeout_secs, 120);
        for bad in ["a__b", "", "a.b", "_a"] {
            let text = format!("[[upstreams]]\nname = \"{bad}\"\ncommand = [\"srv\"]\n");
            let c = Config::parse(&text, "w.toml").expect("parses");
            assert!(c.validate().is_err(), "{bad:?} must be refused");
        }
        let twice = "[[upstreams]]\nname = \"x\"\ncommand = [\"a\"]\n\
                     [[upstreams]]\nname = \"x\"\ncommand = [\"b\"]\n";
        let c = Config::parse(twice, "w.toml").expect("parses");
        assert!(c
            .validate()
            .expect_err("twice")
            .to_string()
            .contains("twice"));
        let c =
            Config::parse("[[upstreams]]\nname = \"x\"\ncommand = []\n", "w.toml").expect("parses");
        assert!(c
            .validate()
            .expect_err("no program")
            .to_string()
            .contains("command"));
    }

    #[test]
    fn a_remote_upstream_has_a_url_and_its_own_headers() {
        let ok = "[[upstreams]]\nname = \"remote\"\nurl = \"http://10.0.0.5:3001/mcp\"\n\
                  headers = { X-Tenant = \"blue\" }\n";
        let c = Config::parse(ok, "w.toml").expect("parses");
        c.validate().expect("valid");
        assert_eq!(
            c.upstreams[0].url.as_deref(),
            Some("http://10.0.0.5:3001/mcp")
        );
        for (body, says) in [
            ("url = \"http://h/mcp\"\ncommand = [\"srv\"]", "not both"),
            ("url = \"ftp://h/mcp\"", "http://"),
            ("url = \"http://h/mcp\"\nca_file = \"ca.pem\"", "https://"),
            (
                "url = \"https://h/mcp\"\nheaders = { authorization = \"Bearer s3cret\" }",
                "bearer_token_env",
            ),
            (
                "url = \"https://h/mcp\"\nbearer_token_env = \"A\"\nbearer_token_file = \"t\"",
                "one credential",
            ),
            (
                "url = \"https://h/mcp\"\nbearer_token_env = \"WARDEN_TEST_SURELY_UNSET_VAR\"",
                "`WARDEN_TEST_SURELY_UNSET_VAR` is not set",
            ),
            (
                "url = \"https://h/mcp\"\nbearer_token_file = \"/nonexistent/token\"",
                "cannot read /nonexistent/token",
            ),
            (
                "url = \"https://h/mcp\"\noauth = { token_url = \"https://a/token\", client_id = \"w\" }",
                "client_secret_env",
            ),
            (
                "url = \"https://h/mcp\"\nca_file = \"/nonexistent/ca.pem\"",
                "`ca_file` /nonexistent/ca.pem",
            ),
            ("command = [\"srv\"]\nbearer_token_env = \"A\"", "for a `url`"),
            ("url = \"http:///mcp\"", "no host"),
            ("url = \"http://h/mcp\"\nenv = { A = \"1\" }", "`env`"),
            ("command = [\"srv\"]\nheaders = { A = \"1\" }", "`headers`"),
            (
                "url = \"http://h/mcp\"\nheaders = { \"A B\" = \"1\" }",
                "header `A B`",
            ),
            ("", "`command`"),
        ] {
            let text = format!("[[upstreams]]\nname = \"x\"\n{body}\n");
            let c = Config::parse(&text, "w.toml").expect("parses");
            let err = c.validate().expect_err(body).to_string();
            assert!(err.contains(says), "{body:?}: {err}");
        }
    }

    #[test]
    fn an_upstreams_secret_files_are_read_relative_to_the_config_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("secrets")).expect("mkdir");
        std::fs::write(dir.path().join("secrets/docs-token"), "t0ken\n").expect("write");
        let path = dir.path().join("warden.toml");
        std::fs::write(
            &path,
            "[[upstreams]]\nname = \"docs\"\nurl = \"https://docs.example/mcp\"\n\
             bearer_token_file = \"secrets/docs-token\"\n",
        )
        .expect("write");
        let c = Config::load(&path).expect("loads");
        c.validate()
            .expect("valid: the token file is found beside the config");
        assert_eq!(
            c.upstreams[0].bearer_token_file.as_deref(),
            Some(dir.path().join("secrets/docs-token").as_path())
        );
    }

    #[test]
    fn open_guard_api_off_loopback_is_refused() {
        let c = Config::parse("[server]\nlisten = \"0.0.0.0:8787\"\n", "w.toml").expect("parses");
        assert!(c
            .validate()
            .expect_err("refused")
            .to_string()
            .contains("api_keys"));
    }
}
