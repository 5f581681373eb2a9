//! `/mcp` in front of several child-process upstreams, one of them misbehaving: a small real MCP
//! server (Python, newline-delimited JSON-RPC over stdio) that answers `initialize` and then,
//! by its mode, never answers `tools/list` (`stuck`), never answers anything (`mute`), or answers
//! a call with more than stdio's 16 MiB per message (`huge`); beside it the same server in mode
//! `ok`. What an agent relies on: the others' tools are listed and called while one is stuck,
//! and a call that cannot be answered says why at once.

mod support;
use support::mcp::{connect as connect_to, text_of, Client};
use support::Server;

use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use warden_gateway::Config;

/// The misbehaving server (see its header).
const SERVER_PY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/misbehaving_server.py"
);

/// A zero-config Warden fronting `ok` and the server in `mode`, each with `timeout_secs`.
async fn serve_beside(dir: &std::path::Path, mode: &str, timeout_secs: u64) -> Server {
    let script = std::path::Path::new(SERVER_PY);
    let upstream = |name: &str, mode: &str| {
        format!(
            "[[upstreams]]\nname = \"{name}\"\ncommand = [\"python3\", {:?}, \"{mode}\"]\ntimeout_secs = {timeout_secs}\n\n",
            script.display().to_string()
        )
    };
    let toml = format!(
        "[mcp]\nhold_timeout_secs = 0\n\n{}{}",
        upstream("good", "ok"),
        upstream("bad", mode)
    );
    let mut config = Config::parse(&toml, "test.toml").expect("the config parses");
    config.server.data_dir = dir.join("state");
    Server::start(config).await
}

async fn connect(server: &Server) -> Client {
    connect_to(server, None).await
}

/// Waits this long at most (ten times the deadline under test) rather than hang the suite.
async fn within<T>(secs: u64, what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not answer within {secs} s"))
}

async fn tool_names(client: &Client) -> Vec<String> {
    let tools = client.list_all_tools().await.expect("tools/list");
    tools.into_iter().map(|t| t.name.to_string()).collect()
}

async fn call(client: &Client, tool: &str, text: &str) -> CallToolResult {
    let args = serde_json::json!({ "text": text });
    let args = args.as_object().cloned().expect("an object");
    client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("tools/call {tool}: {e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_never_answers_tools_list_leaves_every_clients_list_with_the_others_tools()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve_beside(dir.path(), "stuck", 2).await;
    let (first, second) = (connect(&server).await, connect(&server).await);
    let (a, b) = within(20, "tools/list", async {
        tokio::join!(tool_names(&first), tool_names(&second))
    })
    .await;
    assert_eq!(a, ["good__echo"]);
    assert_eq!(b, ["good__echo"]);
    // Still stuck: the next list is answered as soon.
    let again = within(20, "a second tools/list", tool_names(&first)).await;
    assert_eq!(again, ["good__echo"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_to_a_stuck_upstream_ends_at_its_timeout_while_another_upstreams_call_is_answered() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve_beside(dir.path(), "stuck", 2).await;
    let client = connect(&server).await;
    let stuck = call(&client, "bad__echo", "hello");
    let good = async {
        let r = call(&client, "good__echo", "hello").await;
        assert_eq!(text_of(&r), "hello");
        assert_ne!(r.is_error, Some(true), "{r:?}");
    };
    let (stuck, ()) = within(20, "the calls", async { tokio::join!(stuck, good) }).await;
    assert_eq!(stuck.is_error, Some(true), "{stuck:?}");
    let text = text_of(&stuck);
    assert!(
        text.contains("`bad`") && text.contains("within 2 s"),
        "the refusal names the server and its timeout: {text}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_never_answers_initialize_delays_no_other_upstreams_tools() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve_beside(dir.path(), "mute", 2).await;
    let client = connect(&server).await;
    // The mute server's start takes up to 30 s; nobody waits on it longer than its deadline.
    let listed = within(20, "tools/list", tool_names(&client)).await;
    assert_eq!(listed, ["good__echo"]);
    let other = connect(&server).await;
    let r = within(
        20,
        "a call beside the start",
        call(&other, "good__echo", "hi"),
    )
    .await;
    assert_eq!(text_of(&r), "hi");
    let refused = within(
        20,
        "a call of the mute server",
        call(&other, "bad__echo", "hi"),
    )
    .await;
    assert_eq!(refused.is_error, Some(true), "{refused:?}");
    assert!(text_of(&refused).contains("`bad`"), "{}", text_of(&refused));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_over_stdios_16_mib_fails_the_call_at_once_naming_the_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = serve_beside(dir.path(), "huge", 60).await;
    let client = connect(&server).await;
    // A third of the call's 60 s timeout: it is not waited out.
    let r = within(20, "the call", call(&client, "bad__echo", "hi")).await;
    assert_eq!(r.is_error, Some(true), "{r:?}");
    let text = text_of(&r);
    assert!(
        text.contains("`bad`") && text.contains("more than 16 MiB"),
        "the refusal names the server and the limit: {text}"
    );
    // The other server is untouched, and the next call starts this one again.
    let ok = within(20, "a call of the other", call(&client, "good__echo", "hi")).await;
    assert_eq!(text_of(&ok), "hi");
    server.stop().await;
}
