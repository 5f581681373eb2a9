//! An agent's side of `/mcp`, with rmcp's client over streamable HTTP: connect (in a Warden
//! session of its own, or in the one a token names), and read a tool result's text.

use rmcp::model::CallToolResult;
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceExt};

use super::Server;

pub type Client = RunningService<RoleClient, ()>;

/// Through `/mcp`, in the Warden session whose token this is (else a session of its own).
pub async fn connect(server: &Server, token: Option<&str>) -> Client {
    let mut config = StreamableHttpClientTransportConfig::with_uri(server.url("/mcp"));
    if let Some(t) = token {
        config = config.auth_header(t.to_owned());
    }
    let transport = StreamableHttpClientTransport::with_client(super::http(), config);
    ().serve(transport).await.expect("initialize through /mcp")
}

/// The text blocks of a tool result, one per line.
pub fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}
