#!/usr/bin/env bash
# What a fallback costs in wall-clock time (SPEC 10, issue 25): the p50 of a
# request whose primary refuses connections and whose fallback answers,
# against the p50 of the same request sent to that fallback directly.
#
#   bash benches/routing_latency.sh      # about 30 s; part of `make bench`
#
# tollgate (not under valgrind) in front of the bench mock; the primary is an
# openai_compatible provider on a port nobody listens on. Its cooldown is
# set out of reach (1,000,000 failures) so that every request pays for the
# refused connection, as the first requests after an outage do. wrk, one
# connection, 5 s per path after 2 s of warm-up; both paths in one run, so
# only their difference is read (the VM is noisy).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export OPENSSL_NO_VENDOR=${OPENSSL_NO_VENDOR:-1}

cargo build --release --locked
source benches/tools.sh
need_wrk
eval "$(bench_tools mock_provider)"
TMP=$(mktemp -d /tmp/tollgate-rl.XXXXXX)
# Background jobs (the mock, tollgate) end with the script.
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$TMP"' EXIT
# Four free ports: the mock, tollgate, its metrics, and the dead primary.
ports=($(free_ports 4))
MOCK_PORT=${ports[0]} PORT=${ports[1]} METRICS_PORT=${ports[2]} DEAD_PORT=${ports[3]}

"$MOCK_PROVIDER" --listen "127.0.0.1:$MOCK_PORT" --threads 1 >"$TMP/mock.log" 2>&1 &
sed -e "s#@TMP@#$TMP#g; s#@PORT@#$PORT#g; s#@METRICS_PORT@#$METRICS_PORT#g; s#@MOCK_PORT@#$MOCK_PORT#g" benches/tollgate-bench.yaml >"$TMP/tollgate.yaml"
printf '    dead: { kind: openai_compatible, base_url: "http://127.0.0.1:%s", keys: [{ name: d, value: env.TOLLGATE_BENCH_OPENAI_KEY }] }\n  routing:\n    cooldown: { failures: 1000000, window_s: 1, s: 1 }\n' "$DEAD_PORT" >>"$TMP/tollgate.yaml"
TOLLGATE_BENCH_OPENAI_KEY=sk-bench-dummy TOLLGATE_BENCH_ANTHROPIC_KEY=sk-ant-bench-dummy RUST_LOG=error \
  "$ROOT/target/release/tollgate" -c "$TMP/tollgate.yaml" >"$TMP/tollgate.log" 2>&1 &
URL="http://127.0.0.1:$PORT/openai/v1/chat/completions"
for ((i = 0; i < 100; i++)); do curl -s -o /dev/null "http://127.0.0.1:$PORT/readyz" && break; sleep 0.1; done

run() {
  local label=$1 body=$2
  printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' "'$body'" >"$TMP/$label.lua"
  sed -n '/^done = /,$p' benches/wrk-post.lua >>"$TMP/$label.lua"
  curl -s -o "$TMP/$label.check" -w '%{http_code}' -X POST "$URL" -H 'content-type: application/json' -d "$body" | grep -q 200 || { echo "$label: not a 200: $(cat "$TMP/$label.check")" >&2; exit 1; }
  wrk -t1 -c1 -d2s -s "$TMP/$label.lua" "$URL" >/dev/null 2>&1
  wrk -t1 -c1 -d5s -s "$TMP/$label.lua" "$URL" 2>&1 | sed -n 's/^WRKJSON //p'
}
direct=$(run direct '{"model":"anthropic/claude-sonnet-4-5","messages":[{"role":"user","content":"Say hi"}]}')
fallback=$(run fallback '{"model":"dead/m","fallbacks":["anthropic/claude-sonnet-4-5"],"messages":[{"role":"user","content":"Say hi"}]}')
python3 - "$direct" "$fallback" <<'PY'
import json, sys
d, f = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print("Fallback latency (wrk, 1 connection, 5 s each; primary refusing connections)")
print()
print("| path | requests | errors | p50 | p99 |")
print("|---|---:|---:|---:|---:|")
for label, r in (("direct (anthropic/claude-sonnet-4-5)", d), ("dead primary, then that fallback", f)):
    print(f"| {label} | {r['requests']} | {r['non_2xx'] + r['socket_errors']} | {r['p50_us'] / 1000:.3f} ms | {r['p99_us'] / 1000:.3f} ms |")
print()
print(f"added p50: {(f['p50_us'] - d['p50_us']) / 1000:.3f} ms (issue 25: at most 1 ms)")
PY
