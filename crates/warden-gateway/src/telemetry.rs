//! OpenTelemetry export: one `invoke_agent` span per Warden session and one `execute_tool` span
//! per decided call, named and attributed after the GenAI semantic conventions (with Warden's
//! decision under `warden.*`), batched and sent over OTLP/HTTP (protobuf) to
//! `[telemetry] endpoint`. Off unless an endpoint is configured: no surprise network access.
//!
//! Spans are built after the fact (a session span when it opens, a call span when its decision
//! is recorded), so their ids are derived, not kept: a session's trace id and span id are
//! digests of its id, and a call's span id a digest of its decision id. Any process serving the
//! session (after a restart, or `serve` beside `mcp`) thus parents its calls under the same
//! session span. A call that carries a W3C `traceparent` (the guard API's header, MCP's `_meta`)
//! joins the agent's trace instead, as a child of the agent's span, linked to the session span.

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{
    Link, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId,
    TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SpanData, SpanEvents, SpanLinks, SpanProcessor as _,
};
use opentelemetry_sdk::Resource;
use sha2::{Digest, Sha256};
use warden_model::{Session, Verdict};

use crate::config::TelemetryConfig;
use crate::runtime::DecisionRecord;

/// How a call reached Warden, for its span: the caller's trace context and the MCP method.
#[derive(Debug, Clone, Default)]
pub struct CallTrace {
    /// A W3C `traceparent` header value; ignored unless well-formed.
    pub traceparent: Option<String>,
    /// `tools/call` when the call came over MCP.
    pub mcp_method: Option<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("[telemetry] endpoint `{0}` is not an http:// or https:// URL")]
    Endpoint(String),
    #[error("[telemetry]: the OTLP exporter could not be built: {0}")]
    Exporter(String),
}

/// The span exporter of a running gateway.
pub struct Telemetry {
    processor: BatchSpanProcessor,
    scope: InstrumentationScope,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

/// The OTLP/HTTP traces URL of an endpoint: `http://host:4318` gets `/v1/traces` (as
/// `OTEL_EXPORTER_OTLP_ENDPOINT` does); a URL already ending in `/v1/traces` is kept.
pub fn traces_url(endpoint: &str) -> Result<String, TelemetryError> {
    let e = endpoint.trim();
    if !(e.starts_with("http://") || e.starts_with("https://")) || e.len() <= "https://".len() {
        return Err(TelemetryError::Endpoint(endpoint.to_owned()));
    }
    if e.ends_with("/v1/traces") {
        return Ok(e.to_owned());
    }
    Ok(format!("{}/v1/traces", e.trim_end_matches('/')))
}

impl Telemetry {
    /// The exporter `config` asks for, or `None` when it names no endpoint.
    pub fn start(config: &TelemetryConfig) -> Result<Option<Telemetry>, TelemetryError> {
        let Some(endpoint) = &config.endpoint else {
            return Ok(None);
        };
        let url = traces_url(endpoint)?;
        let timeout = Duration::from_millis(config.timeout_ms);
        // A blocking client must not be built (or dropped) on an async runtime's thread: build
        // it on a thread of its own, as the exporter would, with Warden's TLS and roots.
        let ca_file = config.ca_file.clone();
        let client = std::thread::spawn(move || {
            crate::outbound::blocking_client(ca_file.as_deref(), timeout)
        })
        .join()
        .map_err(|_| TelemetryError::Exporter("building the HTTP client failed".into()))?
        .map_err(TelemetryError::Exporter)?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(url)
            .with_timeout(timeout)
            .with_headers(
                config
                    .headers
                    .clone()
                    .into_iter()
                    .collect::<HashMap<_, _>>(),
            )
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let batch = BatchConfigBuilder::default()
            .with_scheduled_delay(Duration::from_millis(config.batch_delay_ms))
            .build();
        let mut processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        processor.set_resource(
            &Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        );
        let scope = InstrumentationScope::builder("warden")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        Ok(Some(Telemetry { processor, scope }))
    }

    /// The `invoke_agent` span of a session that just opened.
    pub fn session_opened(&self, session: &Session) {
        let at = time(session.opened_at_ms);
        let mut attributes = vec![
            KeyValue::new("gen_ai.operation.name", "invoke_agent"),
            KeyValue::new("gen_ai.agent.name", session.agent.clone()),
            KeyValue::new("gen_ai.conversation.id", session.id.clone()),
            KeyValue::new("warden.session.principal", session.principal.clone()),
            KeyValue::new("warden.session.channel", session.channel.clone()),
        ];
        if let Some(p) = &session.profile {
            attributes.push(KeyValue::new("warden.session.profile", p.clone()));
        }
        self.processor.on_end(SpanData {
            span_context: session_span(&session.id),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Internal,
            name: Cow::Owned(format!("invoke_agent {}", session.agent)),
            start_time: at,
            end_time: at,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: self.scope.clone(),
        });
    }

    /// The `execute_tool` span of a decided call, from `started` to now.
    pub fn call_decided(
        &self,
        session: &Session,
        record: &DecisionRecord,
        trace: &CallTrace,
        started: SystemTime,
    ) {
        let own = session_span(&session.id);
        let remote = trace.traceparent.as_deref().and_then(parse_traceparent);
        let (trace_id, parent, parent_is_remote, links) = match &remote {
            Some(caller) => (
                caller.trace_id(),
                caller.span_id(),
                true,
                vec![Link::with_context(own.clone())],
            ),
            None => (own.trace_id(), own.span_id(), false, Vec::new()),
        };
        let d = &record.decision;
        let mut attributes = vec![
            KeyValue::new("gen_ai.operation.name", "execute_tool"),
            KeyValue::new("gen_ai.tool.name", record.tool.clone()),
            KeyValue::new("gen_ai.tool.call.id", record.call_id.clone()),
            KeyValue::new("gen_ai.conversation.id", session.id.clone()),
            KeyValue::new("gen_ai.agent.name", session.agent.clone()),
            KeyValue::new("warden.decision", d.verdict.as_str()),
            KeyValue::new("warden.decision.id", record.decision_id.clone()),
            KeyValue::new("warden.policy_digest", record.policy_digest.clone()),
            strings(
                "warden.policy_ids",
                d.reasons.iter().map(|r| r.policy.clone()),
            ),
            strings(
                "warden.reasons",
                d.reasons.iter().map(|r| r.message.clone()),
            ),
            KeyValue::new("warden.anomaly.score", d.anomaly.score),
        ];
        if let Some(m) = trace.mcp_method {
            attributes.push(KeyValue::new("mcp.method.name", m));
        }
        if let Some(v) = record.shadow_verdict {
            attributes.push(KeyValue::new("warden.shadow_verdict", v.as_str()));
        }
        let args_where = |f: fn(&warden_model::ArgProvenance) -> bool| {
            d.provenance
                .iter()
                .filter(move |(_, p)| f(p))
                .map(|(a, _)| a.clone())
        };
        attributes.push(strings(
            "warden.provenance.untrusted_args",
            args_where(|p| p.untrusted_only || p.untrusted_prose_only),
        ));
        attributes.push(strings(
            "warden.provenance.unknown_args",
            args_where(|p| p.unknown),
        ));
        let mut sources: Vec<i64> = d
            .provenance
            .values()
            .flat_map(|p| p.sources.iter().map(|&s| s as i64))
            .collect();
        sources.sort_unstable();
        sources.dedup();
        attributes.push(KeyValue::new(
            "warden.provenance.sources",
            Value::Array(sources.into()),
        ));
        let status = match d.verdict {
            Verdict::Deny => Status::error(
                d.reasons
                    .first()
                    .map(|r| format!("denied by {}: {}", r.policy, r.message))
                    .unwrap_or_else(|| "denied".into()),
            ),
            Verdict::Allow | Verdict::Hold => Status::Unset,
        };
        let span_id = SpanId::from_bytes(digest::<8>("warden-call", &record.decision_id));
        self.processor.on_end(SpanData {
            span_context: SpanContext::new(
                trace_id,
                span_id,
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: parent,
            parent_span_is_remote: parent_is_remote,
            span_kind: SpanKind::Internal,
            name: Cow::Owned(format!("execute_tool {}", record.tool)),
            start_time: started,
            end_time: SystemTime::now().max(started),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: span_links(links),
            status,
            instrumentation_scope: self.scope.clone(),
        });
    }

    /// Send what is batched and stop; called when the gateway shuts down.
    pub fn shutdown(&self) {
        if let Err(e) = self.processor.shutdown() {
            tracing::warn!("telemetry: spans may be lost at shutdown: {e}");
        }
    }
}

fn span_links(links: Vec<Link>) -> SpanLinks {
    let mut out = SpanLinks::default();
    out.links = links;
    out
}

fn strings(key: &'static str, values: impl Iterator<Item = String>) -> KeyValue {
    let v: Vec<StringValue> = values.map(StringValue::from).collect();
    KeyValue::new(key, Value::Array(v.into()))
}

fn time(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn digest<const N: usize>(domain: &str, id: &str) -> [u8; N] {
    let h = Sha256::new()
        .chain_update(domain.as_bytes())
        .chain_update([0])
        .chain_update(id.as_bytes())
        .finalize();
    let mut out = [0u8; N];
    out.copy_from_slice(&h[..N]);
    out
}

/// The span context of a session's `invoke_agent` span, derived from its id.
pub fn session_span(session: &str) -> SpanContext {
    SpanContext::new(
        TraceId::from_bytes(digest::<16>("warden-trace", session)),
        SpanId::from_bytes(digest::<8>("warden-session", session)),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    )
}

/// The caller's span from a W3C `traceparent`, read by OpenTelemetry's own propagator.
fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let carrier = HashMap::from([("traceparent".to_owned(), value.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_gets_the_traces_path_once() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318").expect("ok"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/").expect("ok"),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/v1/traces").expect("ok"),
            "http://c:4318/v1/traces"
        );
        assert!(traces_url("collector:4318").is_err());
    }

    #[test]
    fn a_traceparent_is_read_and_a_broken_one_ignored() {
        let sc = parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
            .expect("valid");
        assert_eq!(
            sc.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(sc.span_id().to_string(), "b7ad6b7169203331");
        assert!(
            parse_traceparent("00-00000000000000000000000000000000-b7ad6b7169203331-01").is_none()
        );
        assert!(parse_traceparent("garbage").is_none());
    }

    #[test]
    fn telemetry_is_off_without_an_endpoint_and_says_which_ca_file_it_cannot_read() {
        let off = Telemetry::start(&TelemetryConfig::default()).expect("ok");
        assert!(off.is_none());
        let https = TelemetryConfig {
            endpoint: Some("https://collector.example:4318".into()),
            ..TelemetryConfig::default()
        };
        assert!(Telemetry::start(&https).expect("https is spoken").is_some());
        let unreadable = TelemetryConfig {
            ca_file: Some("/nonexistent/collector-ca.pem".into()),
            ..https
        };
        let err = Telemetry::start(&unreadable).expect_err("no such CA file");
        assert!(
            err.to_string().contains("/nonexistent/collector-ca.pem"),
            "{err}"
        );
    }

    #[test]
    fn a_session_always_gets_the_same_trace_and_span() {
        assert_eq!(session_span("s_1"), session_span("s_1"));
        assert_ne!(
            session_span("s_1").trace_id(),
            session_span("s_2").trace_id()
        );
    }
}
