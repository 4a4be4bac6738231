#!/usr/bin/env bash
# The request log store (SPEC 12, issue 27) in wall-clock time: the
# passthrough's p50 with `logs` off and on (issue 27: added p50 ≤ 20 µs).
#
#   bash benches/logs_latency.sh      # about 40 s; part of `make bench`
#
# Two tollgates (not under valgrind) in front of the bench mock, the same
# configuration but for `logs`; wrk over one keep-alive connection, 5 s per
# run after a 2 s warm-up, the two alternated three times, so load on the
# VM hits both alike. Read the difference of the medians of the runs' p50.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export OPENSSL_NO_VENDOR=${OPENSSL_NO_VENDOR:-1}
cargo build --release --locked
source benches/tools.sh
need_wrk
eval "$(bench_tools mock_provider)"
TMP=$(mktemp -d /tmp/tollgate-logs-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$TMP"' EXIT
ports=($(free_ports 5))
MOCK=${ports[0]}
"$MOCK_PROVIDER" --listen "127.0.0.1:$MOCK" --threads 1 >"$TMP/mock.log" 2>&1 &
start() { # name, port, metrics port, extra config
  mkdir -p "$TMP/$1"
  sed -e "s#@TMP@#$TMP/$1#g; s#@PORT@#$2#g; s#@METRICS_PORT@#$3#g; s#@MOCK_PORT@#$MOCK#g" benches/tollgate-bench.yaml >"$TMP/$1.yaml"
  printf '%s' "$4" >>"$TMP/$1.yaml"
  TOLLGATE_BENCH_OPENAI_KEY=sk-bench-dummy TOLLGATE_BENCH_ANTHROPIC_KEY=sk-ant-bench-dummy RUST_LOG=error \
    "$ROOT/target/release/tollgate" -c "$TMP/$1.yaml" >"$TMP/$1.log" 2>&1 &
  for ((i = 0; i < 100; i++)); do curl -s -o /dev/null "http://127.0.0.1:$2/readyz" && break; sleep 0.1; done
}
start off "${ports[1]}" "${ports[2]}" ""
start on "${ports[3]}" "${ports[4]}" "  store: { path: $TMP/on/store/tollgate.db }
  logs: { retention_days: 30, max_rows: 1000000 }
"
run() { wrk -t1 -c1 -d"$2" -s benches/wrk-post.lua "http://127.0.0.1:$1/openai_passthrough/v1/chat/completions" 2>&1 | sed -n 's/^WRKJSON //p'; }
run "${ports[1]}" 2s >/dev/null
run "${ports[3]}" 2s >/dev/null
results=()
for round in 1 2 3; do
  results+=("$(run "${ports[1]}" 5s)" "$(run "${ports[3]}" 5s)")
done
rows=$(curl -s "http://127.0.0.1:${ports[4]}/admin/logs?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["requests"])')
dropped=$(curl -s "http://127.0.0.1:${ports[4]}/metrics" | awk '$1 == "tollgate_logs_dropped_total" {print $2}')
python3 - "$rows" "${dropped:-0}" "${results[@]}" <<'PY'
import json, statistics, sys
rows, dropped = int(sys.argv[1]), float(sys.argv[2])
runs = [json.loads(a) for a in sys.argv[3:]]
off, on = runs[0::2], runs[1::2]
print("Request log store, wall clock (wrk, 1 connection, 5 s per run, off and on alternated 3 times)")
print()
print("| path | requests | errors | p50 per run (µs) | median p50 |")
print("|---|---:|---:|---|---:|")
for label, rs in (("passthrough, `logs` off", off), ("passthrough, `logs` on", on)):
    p50s = [r["p50_us"] for r in rs]
    print(f"| {label} | {sum(r['requests'] for r in rs)} | {sum(r['non_2xx'] + r['socket_errors'] for r in rs)} | {' / '.join(f'{p:.0f}' for p in p50s)} | {statistics.median(p50s):.0f} |")
added = statistics.median(r["p50_us"] for r in on) - statistics.median(r["p50_us"] for r in off)
print()
print(f"Added p50 with `logs` on: {added:.0f} µs (target ≤ 20 µs: {'met' if added <= 20 else 'not met'}). Rows kept: {rows:,} (every request, warm-ups included); dropped: {dropped:.0f}.")
PY
