#!/usr/bin/env bash
# The response cache (SPEC 11, issue 26) in wall-clock time: an exact hit's
# p50 against the passthrough's (one connection, same body), and the
# throughput of hits against misses (16 connections; every miss a new
# question, so each one calls the mock and stores its answer).
#
#   bash benches/cache.sh      # about 40 s; part of `make bench`
#
# tollgate (not under valgrind) in front of the bench mock; both paths in one
# run, so only their ratio is read (the VM is noisy).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export OPENSSL_NO_VENDOR=${OPENSSL_NO_VENDOR:-1}
cargo build --release --locked
source benches/tools.sh
need_wrk
eval "$(bench_tools mock_provider)"
TMP=$(mktemp -d /tmp/tollgate-cache-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$TMP"' EXIT
ports=($(free_ports 3))
MOCK=${ports[0]} PORT=${ports[1]} MPORT=${ports[2]}
"$MOCK_PROVIDER" --listen "127.0.0.1:$MOCK" --threads 1 >"$TMP/mock.log" 2>&1 &
sed -e "s#@TMP@#$TMP#g; s#@PORT@#$PORT#g; s#@METRICS_PORT@#$MPORT#g; s#@MOCK_PORT@#$MOCK#g" benches/tollgate-bench.yaml >"$TMP/tollgate.yaml"
printf '  store: { path: %s/store/tollgate.db }\n  cache: { ttl_s: 3600, max_entries: 1000000 }\n' "$TMP" >>"$TMP/tollgate.yaml"
TOLLGATE_BENCH_OPENAI_KEY=sk-bench-dummy TOLLGATE_BENCH_ANTHROPIC_KEY=sk-ant-bench-dummy RUST_LOG=error \
  "$ROOT/target/release/tollgate" -c "$TMP/tollgate.yaml" >"$TMP/tollgate.log" 2>&1 &
for ((i = 0; i < 100; i++)); do curl -s -o /dev/null "http://127.0.0.1:$PORT/readyz" && break; sleep 0.1; done

BODY='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hi"}]}'
DONE_FN=$(sed -n '/^done = /,$p' benches/wrk-post.lua)
script() { # name, extra header line
  printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\nwrk.headers["Authorization"] = "Bearer dummy-key"\n%s\n%s\n' "'$BODY'" "$2" "$DONE_FN" >"$TMP/$1.lua"
}
script pass ''
script hit 'wrk.headers["x-bf-cache-key"] = "bench"'
# Every request a new question: a miss that calls the mock and stores.
cat >"$TMP/miss.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer dummy-key"
wrk.headers["x-bf-cache-key"] = "bench-miss"
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Question ' .. n .. ' from thread ' .. tostring(wrk.thread) .. math.random(1, 1e9) .. '"}]}')
end
LUA
echo "$DONE_FN" >>"$TMP/miss.lua"
curl -s -o /dev/null -X POST "http://127.0.0.1:$PORT/openai/v1/chat/completions" -H 'content-type: application/json' -H 'x-bf-cache-key: bench' -d "$BODY"
run() { wrk -t"$2" -c"$3" -d"$4" -s "$TMP/$1.lua" "$5" 2>&1 | sed -n 's/^WRKJSON //p'; }
P=http://127.0.0.1:$PORT
run pass 1 1 2s "$P/openai_passthrough/v1/chat/completions" >/dev/null
pass=$(run pass 1 1 5s "$P/openai_passthrough/v1/chat/completions")
run hit 1 1 2s "$P/openai/v1/chat/completions" >/dev/null
hit=$(run hit 1 1 5s "$P/openai/v1/chat/completions")
hit_rps=$(run hit 2 16 5s "$P/openai/v1/chat/completions")
miss_rps=$(run miss 2 16 5s "$P/openai/v1/chat/completions")
# The same exact hit on a second tollgate whose entries live in Redis.
redis_hit='null'
if command -v redis-server >/dev/null 2>&1; then
  RPORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no >"$TMP/redis.log" 2>&1 &
  ports2=($(free_ports 2))
  sed -e "s#@TMP@#$TMP/r#g; s#@PORT@#${ports2[0]}#g; s#@METRICS_PORT@#${ports2[1]}#g; s#@MOCK_PORT@#$MOCK#g" benches/tollgate-bench.yaml >"$TMP/tollgate-redis.yaml"
  mkdir -p "$TMP/r"
  printf '  store: { path: %s/r/store/tollgate.db }
  cache: { ttl_s: 3600 }
  redis: { url: "redis://127.0.0.1:%s" }
' "$TMP" "$RPORT" >>"$TMP/tollgate-redis.yaml"
  TOLLGATE_BENCH_OPENAI_KEY=sk-bench-dummy TOLLGATE_BENCH_ANTHROPIC_KEY=sk-ant-bench-dummy RUST_LOG=error \
    "$ROOT/target/release/tollgate" -c "$TMP/tollgate-redis.yaml" >"$TMP/tollgate-redis.log" 2>&1 &
  R=http://127.0.0.1:${ports2[0]}
  for ((i = 0; i < 100; i++)); do curl -s -o /dev/null "$R/readyz" && break; sleep 0.1; done
  curl -s -o /dev/null -X POST "$R/openai/v1/chat/completions" -H 'content-type: application/json' -H 'x-bf-cache-key: bench' -d "$BODY"
  run hit 1 1 2s "$R/openai/v1/chat/completions" >/dev/null
  redis_hit=$(run hit 1 1 5s "$R/openai/v1/chat/completions")
fi
python3 - "$pass" "$hit" "$hit_rps" "$miss_rps" "$redis_hit" <<'PY'
import json, sys
p, h, hr, mr, rh = (json.loads(a) for a in sys.argv[1:])
print("Response cache (wrk; p50 over 1 connection, 5 s; throughput over 16 connections, 5 s)")
print()
print("| path | requests | errors | p50 | p99 | requests/s |")
print("|---|---:|---:|---:|---:|---:|")
for label, r in (("passthrough (/openai_passthrough)", p), ("exact hit (/openai)", h), ("exact hit, 16 connections", hr), ("miss (new question, stored), 16 connections", mr)):
    rps = r["requests"] / (r["duration_us"] / 1e6)
    print(f"| {label} | {r['requests']} | {r['non_2xx'] + r['socket_errors']} | {r['p50_us'] / 1000:.3f} ms | {r['p99_us'] / 1000:.3f} ms | {rps:,.0f} |")
print()
print(f"hit p50 / passthrough p50: {h['p50_us'] / p['p50_us']:.2f} (issue 26: at most 1)")
print(f"hit / miss throughput: {(hr['requests'] / hr['duration_us']) / (mr['requests'] / mr['duration_us']):.2f} (issue 26: at least 3)")
if rh:
    print(f"Redis-shared exact hit, 1 connection: p50 {rh['p50_us'] / 1000:.3f} ms, p99 {rh['p99_us'] / 1000:.3f} ms ({rh['non_2xx'] + rh['socket_errors']} errors)")
    print(f"Redis-shared hit p50 - local hit p50: {(rh['p50_us'] - h['p50_us']):.0f} µs (issue 26: at most 300 µs)")
PY
