#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind: a figure
# that does not move with the machine's load (CPU time does, a lot, on a
# shared 2-core VM, and the VM exposes no hardware counters to `perf stat`).
#
#   bash benches/instructions.sh          # about 2 minutes; installs valgrind if missing
#
# Each proxy runs under `valgrind --tool=callgrind` in front of the bench mock
# (benches/mock_provider.rs). wrk sends the bench's chat-completion POST over
# 4 keep-alive connections: 3 s of warm-up, then the counters are zeroed
# (`callgrind_control -z`), 6 s measured, and dumped (`callgrind_control -d`).
# Figure = instructions in the dump / requests wrk completed in the window.
# Paths: bare Pingora (benches/pingora_bare.rs, the floor; and
# benches/pingora_bare_mimalloc.rs, the same with tollgate's allocator), tollgate
# passthrough (/openai_passthrough), tollgate translated (/openai with an
# anthropic/ model, to the mock's /v1/messages), the same through a routing
# alias with one target and with two (SPEC 10), and the passthrough with the
# request log store on, an exact cache hit on /openai (SPEC 11), and streams
# of 50 events through the passthrough and translated.
# BENCH_BASE=0, BENCH_SHAPES=0, BENCH_ROUTING=0, BENCH_LOGS=0, BENCH_CACHE=0
# and BENCH_SSE=0 skip the first three, the translated requests with a tool
# and with reasoning_effort, the aliases, the log store, the cache hit and
# the streams. Kernel time (system calls)
# is not counted here: benches/run.sh counts the calls themselves.
# Under callgrind the proxy runs some 50x slower; only the ratio and the
# per-request count matter. BENCH_CALLGRIND_KEEP=DIR keeps the callgrind
# files (read them with callgrind_annotate --inclusive=yes).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export OPENSSL_NO_VENDOR=${OPENSSL_NO_VENDOR:-1}

missing=""
command -v valgrind >/dev/null 2>&1 || missing="$missing valgrind"
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get install -y -q $missing >/dev/null
fi

cargo build --release --locked
source benches/tools.sh
eval "$(bench_tools mock_provider pingora_bare pingora_bare_mimalloc)"
TOLLGATE=$ROOT/target/release/tollgate

TMP=$(mktemp -d /tmp/tollgate-ir.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
read -r MOCK_PORT P1 P2 P3 <<<"$(python3 -c 'import socket
s = [socket.socket() for _ in range(4)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')"

"$MOCK_PROVIDER" --listen "127.0.0.1:$MOCK_PORT" --threads 1 >"$TMP/mock.log" 2>&1 &
PIDS+=($!)

# One proxy under callgrind: label, url, command...
measure() {
  local label=$1 url=$2; shift 2
  local out=$TMP/cg.$label
  valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >"$TMP/$label.log" 2>&1 &
  local vp=$!
  PIDS+=("$vp")
  local i
  for ((i = 0; i < 120; i++)); do
    curl -s -o /dev/null -X POST "$url" -d '{}' && break
    sleep 0.5
  done
  local script=${WRK_SCRIPT:-benches/wrk-post.lua}
  wrk -t1 -c4 -d3s -s "$script" "$url" >/dev/null 2>&1
  callgrind_control -z "$vp" >/dev/null 2>&1
  local res
  res=$(wrk -t1 -c4 -d6s -s "$script" "$url" 2>&1 | sed -n 's/^WRKJSON //p')
  callgrind_control -d "$vp" >/dev/null 2>&1
  sleep 1
  kill "$vp" 2>/dev/null || true
  wait "$vp" 2>/dev/null || true
  local dump
  dump=$(ls -t "$out".* 2>/dev/null | head -1)
  python3 - "$label" "$dump" "$res" <<'EOF'
import json, re, subprocess, sys
label, dump, res = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
text = subprocess.run(["callgrind_annotate", dump], capture_output=True, text=True).stdout
ir = int(re.search(r"([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", text).group(1).replace(",", ""))
n = res["requests"]
bad = res["non_2xx"] + res["socket_errors"]
print(f"| {label} | {n} | {bad} | {ir / n / 1000:.1f} k |")
EOF
  if [ -n "${BENCH_CALLGRIND_KEEP:-}" ]; then mkdir -p "$BENCH_CALLGRIND_KEEP"; cp "$dump" "$BENCH_CALLGRIND_KEEP/callgrind.$label"; fi
}

sed -e "s#@TMP@#$TMP#g; s#@PORT@#$P2#g; s#@METRICS_PORT@#$P3#g; s#@MOCK_PORT@#$MOCK_PORT#g" benches/tollgate-bench.yaml >"$TMP/tollgate.yaml"
echo "User-space instructions per request (callgrind; wrk, 4 connections, 6 s measured)"
echo
echo "| path | requests | errors | instructions per request |"
echo "|---|---:|---:|---:|"
[ "${BENCH_BASE:-1}" = 1 ] && measure bare "http://127.0.0.1:$P1/v1/chat/completions" "$PINGORA_BARE" "127.0.0.1:$P1" "127.0.0.1:$MOCK_PORT"
# The floor with tollgate's allocator (mimalloc): how much of the ratio
# above is the allocator's.
[ "${BENCH_BASE:-1}" = 1 ] && measure bare-mimalloc "http://127.0.0.1:$P1/v1/chat/completions" "$PINGORA_BARE_MIMALLOC" "127.0.0.1:$P1" "127.0.0.1:$MOCK_PORT"
export TOLLGATE_BENCH_OPENAI_KEY=sk-bench-dummy TOLLGATE_BENCH_ANTHROPIC_KEY=sk-ant-bench-dummy RUST_LOG=warn
[ "${BENCH_BASE:-1}" = 1 ] && measure tollgate "http://127.0.0.1:$P2/openai_passthrough/v1/chat/completions" "$TOLLGATE" -c "$TMP/tollgate.yaml"
# The translated path: the same POST naming an Anthropic model (/openai ->
# the mock's /v1/messages); a second tollgate, so each gets a fresh count.
sed -e 's#"model":"gpt-4o-mini"#"model":"anthropic/claude-sonnet-4-5"#' benches/wrk-post.lua >"$TMP/wrk-translated.lua"
grep -q anthropic/ "$TMP/wrk-translated.lua"
WRK_SCRIPT=$TMP/wrk-translated.lua measure translated "http://127.0.0.1:$P2/openai/v1/chat/completions" "$TOLLGATE" -c "$TMP/tollgate.yaml"
# Requests outside the common shape the translated path reads typed
# (translate/chat_request.rs): one with a function tool (parsed as a JSON
# value at once), one with `reasoning_effort` after its messages (read typed
# until that member, the rest parsed into a value: the body is read once).
if [ "${BENCH_SHAPES:-1}" = 1 ]; then
  sed -e 's#"messages"#"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],"messages"#' "$TMP/wrk-translated.lua" >"$TMP/wrk-tools.lua"
  grep -q get_weather "$TMP/wrk-tools.lua"
  WRK_SCRIPT=$TMP/wrk-tools.lua measure translated-tools "http://127.0.0.1:$P2/openai/v1/chat/completions" "$TOLLGATE" -c "$TMP/tollgate.yaml"
  sed -e 's#"Say hi"}\]#"Say hi"}],"reasoning_effort":"low"#' "$TMP/wrk-translated.lua" >"$TMP/wrk-reasoning.lua"
  grep -q reasoning_effort "$TMP/wrk-reasoning.lua"
  WRK_SCRIPT=$TMP/wrk-reasoning.lua measure translated-reasoning "http://127.0.0.1:$P2/openai/v1/chat/completions" "$TOLLGATE" -c "$TMP/tollgate.yaml"
fi
# Routing (SPEC 10): the same translated request through an alias with one
# target, and through a two-target weighted alias (both to the mock's
# /v1/messages), against `translated` above (issue 25: at most +3%).
{ cat "$TMP/tollgate.yaml"; printf '  routing:\n    models:\n      bench: { targets: [{ model: anthropic/claude-sonnet-4-5 }] }\n      bench2: { targets: [{ model: anthropic/claude-sonnet-4-5, weight: 1 }, { model: anthropic/claude-haiku-4-5, weight: 1 }] }\n'; } >"$TMP/tollgate-routing.yaml"
if [ "${BENCH_ROUTING:-1}" = 1 ]; then
  for alias in bench bench2; do
    sed -e "s#\"model\":\"gpt-4o-mini\"#\"model\":\"$alias\"#" benches/wrk-post.lua >"$TMP/wrk-$alias.lua"
    grep -q "\"$alias\"" "$TMP/wrk-$alias.lua"
    label=alias; [ "$alias" = bench2 ] && label=alias-2-targets
    WRK_SCRIPT=$TMP/wrk-$alias.lua measure "$label" "http://127.0.0.1:$P2/openai/v1/chat/completions" "$TOLLGATE" -c "$TMP/tollgate-routing.yaml"
  done
fi
# The response cache (SPEC 11): an exact hit on /openai (the same question
# every time, with a cache key; the warm-up's first request stores the
# answer, every measured one is a hit), answered from the embedded store.
if [ "${BENCH_CACHE:-1}" = 1 ]; then
  { cat "$TMP/tollgate.yaml"; printf '  store: { path: %s/cache-bench/tollgate.db }\n  cache: { ttl_s: 3600, max_entries: 1000000 }\n' "$TMP"; } >"$TMP/tollgate-cache.yaml"
  mkdir -p "$TMP/cache-bench"
  sed -e 's#^wrk.headers\["Content-Type"\].*#&\nwrk.headers["x-bf-cache-key"] = "bench"#' benches/wrk-post.lua >"$TMP/wrk-cache.lua"
  grep -q x-bf-cache-key "$TMP/wrk-cache.lua"
  WRK_SCRIPT=$TMP/wrk-cache.lua measure exact-cache-hit "http://127.0.0.1:$P2/openai/v1/chat/completions" "$TOLLGATE" -c "$TMP/tollgate-cache.yaml"
fi
# Streams: the same POST with "stream": true, 50 events back to back, through
# the passthrough (the usage scanner reads every event) and translated (every
# Anthropic event becomes a chat.completion.chunk). Per request, so per event
# is the figure / 50 (the head and the request are paid once).
if [ "${BENCH_SSE:-1}" = 1 ]; then
  sed -e 's#"messages"#"stream":true,"stream_options":{"include_usage":true},"messages"#; s#"Say hi"#"Say hi x-mock-events=50 x-mock-eps=0"#' benches/wrk-post.lua >"$TMP/wrk-sse.lua"
  grep -q 'x-mock-events=50' "$TMP/wrk-sse.lua"
  WRK_SCRIPT=$TMP/wrk-sse.lua measure passthrough-sse "http://127.0.0.1:$P2/openai_passthrough/v1/chat/completions" "$TOLLGATE" -c "$TMP/tollgate.yaml"
  sed -e 's#"model":"gpt-4o-mini"#"model":"anthropic/claude-sonnet-4-5"#' "$TMP/wrk-sse.lua" >"$TMP/wrk-sse-translated.lua"
  grep -q anthropic/ "$TMP/wrk-sse-translated.lua"
  WRK_SCRIPT=$TMP/wrk-sse-translated.lua measure translated-sse "http://127.0.0.1:$P2/openai/v1/chat/completions" "$TOLLGATE" -c "$TMP/tollgate.yaml"
fi
# The request log store (SPEC 12) on: the passthrough again, with `logs`
# configured (rows written off the request path by the log writer thread,
# counted here too: callgrind counts every thread of the process).
if [ "${BENCH_LOGS:-1}" = 1 ]; then
  { cat "$TMP/tollgate.yaml"; printf '  store: { path: %s/logs-bench/tollgate.db }\n  logs: { retention_days: 30, max_rows: 1000000 }\n' "$TMP"; } >"$TMP/tollgate-logs.yaml"
  mkdir -p "$TMP/logs-bench"
  measure passthrough+logs "http://127.0.0.1:$P2/openai_passthrough/v1/chat/completions" "$TOLLGATE" -c "$TMP/tollgate-logs.yaml"
fi
