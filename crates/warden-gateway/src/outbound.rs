//! Warden's outgoing HTTP: the TLS it speaks and the credentials it presents.
//!
//! - TLS is rustls with the ring provider, installed once per process ([`install_tls`]) before
//!   any client is built; a client trusts the platform's roots plus the certificates of a
//!   `ca_file` the config names ([`client`]).
//! - A remote MCP upstream gets only the credential its config gives Warden ([`Credential`]): a
//!   bearer token read from an environment variable or a file, or an OAuth 2.1 access token that
//!   Warden obtains with the client-credentials grant, caches, and fetches again before it
//!   expires. An agent's own token never reaches an upstream: [`UpstreamHttp`] replaces whatever
//!   authorization the transport would send with the upstream's own.

use std::path::Path;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use futures_util::stream::BoxStream;
use reqwest::header::{HeaderName, HeaderValue};
use rmcp::model::ClientJsonRpcMessage;
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use serde::Deserialize;
use std::collections::HashMap;

use crate::config::{OAuthConfig, UpstreamConfig};

/// How long a request to a token endpoint may take.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// A token is fetched again this long before it expires (or at three quarters of its life, for
/// a short-lived one).
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// Install rustls's ring provider as the process default, once. Every HTTP client Warden builds
/// needs it (reqwest refuses to build one without a provider); calling it again is harmless.
pub fn install_tls() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // ring, because it builds with a C compiler alone (aws-lc needs cmake); rustls marks it
        // deprecated for lacking post-quantum key exchange. Err only when another provider was
        // installed first, which serves as well.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// An HTTP client for `http://` and `https://`, trusting the platform's roots and, if given,
/// the certificates in `ca_file` (PEM).
pub fn client(ca_file: Option<&Path>) -> Result<reqwest::Client, String> {
    install_tls();
    let mut builder = reqwest::Client::builder();
    if let Some(path) = ca_file {
        builder = builder.tls_certs_merge(read_roots(path)?);
    }
    builder
        .build()
        .map_err(|e| format!("cannot set up HTTPS: {e}"))
}

/// [`client`], blocking (the OTLP exporter's), with a timeout per request.
pub fn blocking_client(
    ca_file: Option<&Path>,
    timeout: Duration,
) -> Result<reqwest::blocking::Client, String> {
    install_tls();
    let mut builder = reqwest::blocking::Client::builder().timeout(timeout);
    if let Some(path) = ca_file {
        builder = builder.tls_certs_merge(read_roots(path)?);
    }
    builder
        .build()
        .map_err(|e| format!("cannot set up HTTPS: {e}"))
}

/// The certificates of a PEM file, at least one.
pub fn read_roots(path: &Path) -> Result<Vec<reqwest::Certificate>, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("`ca_file` {shown}: cannot read it: {e}"))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("`ca_file` {shown}: not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!("`ca_file` {shown}: holds no PEM certificate"));
    }
    Ok(certs)
}

/// A secret from an environment variable or a file (its content, trimmed), never inline.
pub fn read_secret(what: &str, env: Option<&str>, file: Option<&Path>) -> Result<String, String> {
    let value = match (env, file) {
        (Some(var), None) => std::env::var(var).map_err(|e| match e {
            std::env::VarError::NotPresent => {
                format!("{what}: the environment variable `{var}` is not set")
            }
            std::env::VarError::NotUnicode(_) => {
                format!("{what}: the environment variable `{var}` is not UTF-8")
            }
        })?,
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| format!("{what}: cannot read {}: {e}", path.display()))?,
        _ => return Err(format!("{what}: give an environment variable or a file")),
    };
    let value = value.trim().to_owned();
    if value.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if !value.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Err(format!(
            "{what} holds characters an HTTP header cannot carry"
        ));
    }
    Ok(value)
}

/// What Warden presents to one upstream.
pub enum Credential {
    None,
    Bearer(String),
    OAuth(Box<OAuth>),
}

/// An OAuth 2.1 client-credentials grant and the token it last gave.
pub struct OAuth {
    config: OAuthConfig,
    secret: String,
    /// The resource the token is for (RFC 8707): the upstream's URL unless the config says.
    resource: String,
    http: reqwest::Client,
    token: tokio::sync::Mutex<Option<Token>>,
}

struct Token {
    value: String,
    refresh_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl Credential {
    /// The credential `upstream`'s config names, its secret read now (a missing variable or an
    /// unreadable file is an error at start, not at the first call).
    pub fn of(upstream: &UpstreamConfig, http: &reqwest::Client) -> Result<Credential, String> {
        let name = &upstream.name;
        if let Some(oauth) = &upstream.oauth {
            let secret = read_secret(
                &format!("upstream `{name}`: the OAuth client secret"),
                oauth.client_secret_env.as_deref(),
                oauth.client_secret_file.as_deref(),
            )?;
            let resource = oauth
                .resource
                .clone()
                .or_else(|| upstream.url.clone())
                .unwrap_or_default();
            return Ok(Credential::OAuth(Box::new(OAuth {
                config: oauth.clone(),
                secret,
                resource,
                http: http.clone(),
                token: tokio::sync::Mutex::new(None),
            })));
        }
        if upstream.bearer_token_env.is_none() && upstream.bearer_token_file.is_none() {
            return Ok(Credential::None);
        }
        read_secret(
            &format!("upstream `{name}`: the bearer token"),
            upstream.bearer_token_env.as_deref(),
            upstream.bearer_token_file.as_deref(),
        )
        .map(Credential::Bearer)
    }

    /// The server refused `used`: forget it if it is an OAuth token Warden can replace (the
    /// authorization server may have revoked it early); whether a new one may be tried.
    pub async fn refused(&self, used: &str) -> bool {
        match self {
            Credential::OAuth(oauth) => {
                let mut cached = oauth.token.lock().await;
                if cached.as_ref().is_some_and(|t| t.value == used) {
                    *cached = None;
                }
                true
            }
            _ => false,
        }
    }

    /// The bearer token to send now, if any.
    pub async fn bearer(&self) -> Result<Option<String>, String> {
        match self {
            Credential::None => Ok(None),
            Credential::Bearer(token) => Ok(Some(token.clone())),
            Credential::OAuth(oauth) => oauth.token().await.map(Some),
        }
    }
}

impl OAuth {
    /// The cached token while it is fresh; otherwise a new one from the token endpoint (one
    /// request at a time: callers wait for it rather than each asking).
    async fn token(&self) -> Result<String, String> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(t.value.clone());
        }
        let fresh = self.fetch().await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    async fn fetch(&self) -> Result<Token, String> {
        let url = &self.config.token_url;
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.config.scope {
            form.push(("scope", scope));
        }
        if !self.resource.is_empty() {
            form.push(("resource", &self.resource));
        }
        // client_secret_basic (RFC 6749 §2.3.1): both parts form-urlencoded first.
        let enc = |s: &str| form_urlencode(s);
        let started = Instant::now();
        let response = self
            .http
            .post(url)
            .basic_auth(enc(&self.config.client_id), Some(enc(&self.secret)))
            .form(&form)
            .timeout(TOKEN_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("the token endpoint {url} did not answer: {}", chain(&e)))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| format!("the token endpoint {url}: {}", chain(&e)))?;
        if !status.is_success() {
            let error = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned))
                .unwrap_or_default();
            return Err(format!(
                "the token endpoint {url} refused the client credentials ({status}{}{error})",
                if error.is_empty() { "" } else { ": " }
            ));
        }
        let token: TokenResponse = serde_json::from_str(&body)
            .map_err(|e| format!("the token endpoint {url} answered no access token: {e}"))?;
        if token
            .token_type
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
        {
            return Err(format!(
                "the token endpoint {url} gave a `{}` token; Warden sends bearer tokens only",
                token.token_type.unwrap_or_default()
            ));
        }
        if token.access_token.is_empty()
            || !token
                .access_token
                .bytes()
                .all(|b| (b'!'..=b'~').contains(&b))
        {
            return Err(format!(
                "the token endpoint {url} gave an access token an HTTP header cannot carry"
            ));
        }
        let life = Duration::from_secs(token.expires_in.unwrap_or(3600));
        let fresh_for = life.saturating_sub(REFRESH_MARGIN).max(life * 3 / 4);
        Ok(Token {
            value: token.access_token,
            refresh_at: started + fresh_for,
        })
    }
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// An error with its causes, for a person (reqwest's own message hides the TLS reason).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

/// The streamable HTTP client of one remote upstream: reqwest with the upstream's TLS roots,
/// sending the upstream's own credential on every request (never the agent's).
#[derive(Clone)]
pub struct UpstreamHttp {
    http: reqwest::Client,
    credential: Arc<Credential>,
}

impl UpstreamHttp {
    pub fn new(http: reqwest::Client, credential: Arc<Credential>) -> UpstreamHttp {
        UpstreamHttp { http, credential }
    }

    async fn auth(&self) -> Result<Option<String>, StreamableHttpError<reqwest::Error>> {
        self.credential
            .bearer()
            .await
            .map_err(|e| StreamableHttpError::Io(std::io::Error::other(e)))
    }
}

type Headers = HashMap<HeaderName, HeaderValue>;
type Failure = StreamableHttpError<reqwest::Error>;

impl UpstreamHttp {
    /// Send with the credential; if the server refuses it (401) and it is a token Warden can
    /// replace, once more with a fresh one.
    async fn with_credential<T, F, Fut>(&self, send: F) -> Result<T, Failure>
    where
        F: Fn(reqwest::Client, Option<String>) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let auth = self.auth().await?;
        let first = send(self.http.clone(), auth.clone())
            .await
            .map_err(explained);
        match (&first, &auth) {
            (Err(StreamableHttpError::AuthRequired(_)), Some(used))
                if self.credential.refused(used).await =>
            {
                let auth = self.auth().await?;
                send(self.http.clone(), auth).await.map_err(explained)
            }
            _ => first,
        }
    }
}

/// A connection that failed says why (a certificate no root vouches for, a refused connection):
/// reqwest's own message keeps the cause in its source, which the MCP client's errors drop.
fn explained(e: Failure) -> Failure {
    match e {
        StreamableHttpError::Client(inner) if inner.is_connect() => {
            StreamableHttpError::Io(std::io::Error::other(chain(&inner)))
        }
        other => other,
    }
}

impl StreamableHttpClient for UpstreamHttp {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _agent_auth: Option<String>,
        custom_headers: Headers,
    ) -> Result<StreamableHttpPostResponse, Failure> {
        self.with_credential(|http, auth| {
            let (uri, message) = (uri.clone(), message.clone());
            let (session_id, headers) = (session_id.clone(), custom_headers.clone());
            async move {
                http.post_message(uri, message, session_id, auth, headers)
                    .await
            }
        })
        .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _agent_auth: Option<String>,
        custom_headers: Headers,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, Failure> {
        self.with_credential(|http, auth| {
            let (uri, message) = (uri.clone(), message.clone());
            let (session_id, headers) = (session_id.clone(), custom_headers.clone());
            async move {
                http.post_message_with_max_sse_event_size(
                    uri,
                    message,
                    session_id,
                    auth,
                    headers,
                    max_sse_event_size,
                )
                .await
            }
        })
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        _agent_auth: Option<String>,
        custom_headers: Headers,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, Failure> {
        self.with_credential(|http, auth| {
            let (uri, message) = (uri.clone(), message.clone());
            let (session_id, headers, limits) =
                (session_id.clone(), custom_headers.clone(), limits);
            async move {
                http.post_message_with_response_limits(
                    uri, message, session_id, auth, headers, limits,
                )
                .await
            }
        })
        .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        _agent_auth: Option<String>,
        custom_headers: Headers,
    ) -> Result<(), Failure> {
        let auth = self.auth().await?;
        self.http
            .delete_session(uri, session_id, auth, custom_headers)
            .await
            .map_err(explained)
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _agent_auth: Option<String>,
        custom_headers: Headers,
    ) -> Result<BoxStream<'static, Result<sse_stream::Sse, SseError>>, Failure> {
        let auth = self.auth().await?;
        self.http
            .get_stream(uri, session_id, last_event_id, auth, custom_headers)
            .await
            .map_err(explained)
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        _agent_auth: Option<String>,
        custom_headers: Headers,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<sse_stream::Sse, SseError>>, Failure> {
        let auth = self.auth().await?;
        self.http
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth,
                custom_headers,
                max_sse_event_size,
            )
            .await
            .map_err(explained)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_keeps_unreserved_and_escapes_the_rest() {
        assert_eq!(form_urlencode("warden-1.a_b*"), "warden-1.a_b*");
        assert_eq!(form_urlencode("a b:c/é"), "a+b%3Ac%2F%C3%A9");
    }

    #[test]
    fn a_secret_comes_from_a_set_variable_or_a_readable_file_never_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        std::fs::write(&file, "  s3cret-token\n").expect("write");
        assert_eq!(
            read_secret("the token", None, Some(&file)).as_deref(),
            Ok("s3cret-token")
        );
        let missing = read_secret("the token", Some("WARDEN_TEST_SURELY_UNSET_VAR"), None);
        assert_eq!(
            missing,
            Err(
                "the token: the environment variable `WARDEN_TEST_SURELY_UNSET_VAR` is not set"
                    .into()
            )
        );
        std::fs::write(&file, "\n").expect("write");
        assert_eq!(
            read_secret("the token", None, Some(&file)),
            Err("the token is empty".into())
        );
        let gone = read_secret("the token", None, Some(&dir.path().join("none")));
        assert!(gone.is_err_and(|e| e.starts_with("the token: cannot read")));
    }
}
