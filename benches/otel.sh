#!/usr/bin/env bash
# What tracing costs on the request path (issue 17): the same tollgate
# passthrough (benches/tollgate-bench.yaml) measured with tracing off, with
# tracing on and a collector that accepts every export (a small Python sink),
# and with tracing on and a dead collector (nothing listens on its port),
# over OTLP/HTTP (`dead`) and over OTLP/gRPC (`deadgrpc`).
# Open loop, the driver of benches/run.sh; the three variants take turns,
# ROUNDS times, so a busy machine weighs on each alike.
#
#   bash benches/otel.sh            # BENCH_RPS (1000), BENCH_DURATION (8 s), ROUNDS (3)
#
# Prints one line per run (p50/p99/p99.9 latency in µs from the driver's JSON)
# and the medians per variant; raw JSON in $TMP (kept with BENCH_KEEP_TMP=1).
set -euo pipefail
cd "$(dirname "$0")/.."

RPS=${BENCH_RPS:-1000}
DUR=${BENCH_DURATION:-8}
ROUNDS=${ROUNDS:-3}
TOLLGATE=target/release/tollgate
cargo build --release --locked >/dev/null
source benches/tools.sh
eval "$(bench_tools mock_provider driver)"
CLK_TCK=$(getconf CLK_TCK)

TMP=$(mktemp -d /tmp/tollgate-otel-bench.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${BENCH_KEEP_TMP:-0}" = 1 ]; then echo "raw results in $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
free_ports() { python3 -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"; }
wait_port() {
  local i
  for ((i = 0; i < 200; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "otel.sh: nothing listens on 127.0.0.1:$1" >&2
  return 1
}
read -r MOCK_PORT SINK_PORT DEAD_PORT P_OFF M_OFF P_LIVE M_LIVE P_DEAD M_DEAD P_DEADG M_DEADG <<<"$(free_ports 11)"

"$MOCK_PROVIDER" --listen "127.0.0.1:$MOCK_PORT" --threads 2 >"$TMP/mock.log" 2>&1 &
PIDS+=($!)
# The collector sink: accepts every POST /v1/traces with an empty protobuf answer.
python3 - "$SINK_PORT" >"$TMP/sink.log" 2>&1 <<'EOF' &
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOF
PIDS+=($!)
wait_port "$MOCK_PORT"
wait_port "$SINK_PORT"

start() { # name port metrics_port otel-block
  mkdir -p "$TMP/$1"
  sed -e "s#@TMP@#$TMP/$1#g; s#@PORT@#$2#g; s#@METRICS_PORT@#$3#g; s#@MOCK_PORT@#$MOCK_PORT#g" benches/tollgate-bench.yaml >"$TMP/$1/tollgate.yaml"
  printf '%s' "$4" >>"$TMP/$1/tollgate.yaml"
  TOLLGATE_BENCH_OPENAI_KEY=sk-bench-dummy TOLLGATE_BENCH_ANTHROPIC_KEY=sk-ant-bench-dummy RUST_LOG=warn \
    "$TOLLGATE" -c "$TMP/$1/tollgate.yaml" >"$TMP/$1/stdout" 2>"$TMP/$1/stderr" &
  PIDS+=($!)
  wait_port "$2"
}
start off "$P_OFF" "$M_OFF" ""
start live "$P_LIVE" "$M_LIVE" $'  otel: { endpoint: "http://127.0.0.1:'"$SINK_PORT"$'", scheduled_delay_ms: 1000 }\n'
start dead "$P_DEAD" "$M_DEAD" $'  otel: { endpoint: "http://127.0.0.1:'"$DEAD_PORT"$'", scheduled_delay_ms: 1000 }\n'
start deadgrpc "$P_DEADG" "$M_DEADG" $'  otel: { protocol: grpc, endpoint: "http://127.0.0.1:'"$DEAD_PORT"$'", scheduled_delay_ms: 1000 }\n'
declare -A PORT=([off]=$P_OFF [live]=$P_LIVE [dead]=$P_DEAD [deadgrpc]=$P_DEADG)
declare -A METRICS=([off]=$M_OFF [live]=$M_LIVE [dead]=$M_DEAD [deadgrpc]=$M_DEADG)

drv() { "$DRIVER" "$@" --threads 2 --clk-tck "$CLK_TCK"; }
for v in off live dead deadgrpc; do
  drv rate --url "http://127.0.0.1:${PORT[$v]}/openai_passthrough/v1/chat/completions" --rps 200 --duration 1 --warmup 0 --label "warm-$v" >/dev/null
done
for ((r = 1; r <= ROUNDS; r++)); do
  for v in off live dead deadgrpc; do
    drv rate --url "http://127.0.0.1:${PORT[$v]}/openai_passthrough/v1/chat/completions" --rps "$RPS" \
      --duration "$DUR" --warmup 1 --conns 32 --label "$v" >"$TMP/$v-$r.json"
    python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
lat = d.get("latency_us") or d.get("latency") or {}
def pick(*names):
    for n in names:
        for src in (lat, d):
            if n in src: return src[n]
    return "?"
print("%-5s round %s: %s requests, %s errors, %s non-2xx, p50 %s us, p99 %s us, p99.9 %s us" % (
    sys.argv[2], sys.argv[3], d.get("requests"), d.get("errors"), d.get("non_2xx"),
    pick("p50", "p50_us"), pick("p99", "p99_us"), pick("p999", "p99_9", "p999_us")))' "$TMP/$v-$r.json" "$v" "$r"
  done
done
for v in live dead deadgrpc; do
  curl -s "http://127.0.0.1:${METRICS[$v]}/metrics" | grep -E '^tollgate_otel_spans' | sed "s/^/$v: /" || true
done
