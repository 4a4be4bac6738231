#!/usr/bin/env bash
# tollgate request-path benchmark (GitHub issue 7). One invocation, one
# machine, three paths to the same mock provider:
#
#   direct    driver -> mock_provider
#   nginx     driver -> nginx (benches/nginx.conf, keep-alive proxy) -> mock
#   tollgate  driver -> tollgate (benches/tollgate-bench.yaml) -> mock
#             (/openai_passthrough/v1/chat/completions, OpenAI -> OpenAI)
#   translated  driver -> tollgate /openai/v1/chat/completions with
#             "model": "anthropic/claude-sonnet-4-5" -> mock /v1/messages
#             (OpenAI -> Anthropic Messages and back, issue 13)
#   async     driver -> a second tollgate (benches/tollgate-async-bench.yaml:
#             SQLite store, 16 workers, a virtual key) /openai with
#             x-bf-async: true -> 202 + job id; the pool -> mock (issue 14).
#             Submit latency next to a sync 401 (unknown virtual key) on the
#             same route, and jobs/s for BENCH_ASYNC_JOBS jobs.
#   peers     Portkey's gateway (npm) and LiteLLM's proxy (PyPI), installed
#             into the temp dir first, next to tollgate at the same low rate
#             and 32 connections; system calls per request by strace -c -f on
#             tollgate, nginx and the peers (benches/peers.sh, issue 15).
#
# Builds what it needs, installs nginx-light, wrk, gnuplot-nox, strace (and for
# the peers nodejs, npm, python3-venv) with apt-get
# when missing, runs open-loop 500/1000/2000 RPS, max rate, SSE latency (all
# four paths; wrk only on the first three), 2,000
# held SSE streams and 1 GB bodies, then writes benches/results/latest.json
# and benches/results/latency.svg and prints the table (benches/report.py).
# Every process it starts listens on 127.0.0.1 and is killed on exit.
#
# Environment knobs:
#   BENCH_DURATION=8   seconds measured per open-loop / max-rate run (+1 s warm-up)
#   BENCH_STREAMS=2000 SSE streams held open for the memory figure
#   BENCH_BIG_BYTES=1073741824  size of the upload and download
#   BENCH_ASYNC_JOBS=2000  jobs submitted at once for the jobs/s figure
#   BENCH_ASYNC_RPS=500    open-loop rate of the submit / 401 latency runs
#   BENCH_PEERS=1      0 = no peers; BENCH_PEERS_DIR=<tmp>/peers reuses an install
#   BENCH_PEER_RPS=200 open-loop rate of the peers comparison
#   BENCH_STRACE=1     0 = no system-call counts; BENCH_STRACE_RPS=1000, BENCH_STRACE_SECS=3
#   BENCH_KEEP_TMP=1   keep the temp directory (logs, raw JSON)
#   BENCH_OUT=benches/results   where latest.json and latency.svg go
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
export OPENSSL_NO_VENDOR=1
DUR=${BENCH_DURATION:-8}
WARM=1
RATES=(500 1000 2000)
STREAMS=${BENCH_STREAMS:-2000}
ASYNC_JOBS=${BENCH_ASYNC_JOBS:-2000}
ASYNC_RPS=${BENCH_ASYNC_RPS:-500}
BIG=${BENCH_BIG_BYTES:-1073741824}
OUT=${BENCH_OUT:-$ROOT/benches/results}
START_TS=$(date +%s)

log() { printf '\n== %s\n' "$*" >&2; }

# ---------------------------------------------------------------- packages
missing=""
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$missing nginx-light"
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
command -v gnuplot >/dev/null 2>&1 || missing="$missing gnuplot-nox"
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
[ "${BENCH_STRACE:-1}" != 1 ] || command -v strace >/dev/null 2>&1 || missing="$missing strace"
if [ "${BENCH_PEERS:-1}" = 1 ]; then # Portkey runs on node (--import: node >= 18.19), LiteLLM in a venv
  command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing="$missing python3-venv"
fi
if [ -n "$missing" ]; then
  log "installing:$missing"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# ------------------------------------------------------------------- build
log "building tollgate (release) and the bench tools"
cargo build --release --locked
TOLLGATE=$ROOT/target/release/tollgate
source benches/tools.sh
eval "$(bench_tools mock_provider driver pingora_bare)"
[ -x "${MOCK_PROVIDER:-}" ] && [ -x "${DRIVER:-}" ] && [ -x "${PINGORA_BARE:-}" ] || { echo "run.sh: bench tools did not build" >&2; exit 1; }

# ------------------------------------------------------------ environment
# 2,000 streams cost tollgate two descriptors each (client + upstream).
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -gt 65536 ]; then hard=65536; fi
ulimit -n "$hard"
if [ "$(ulimit -n)" -lt $((STREAMS * 2 + 1000)) ]; then
  echo "run.sh: ulimit -n is $(ulimit -n); $STREAMS streams need $((STREAMS * 2 + 1000))" >&2
  exit 1
fi
CLK_TCK=$(getconf CLK_TCK)

TMP=$(mktemp -d /tmp/tollgate-bench.XXXXXX)
chmod 755 "$TMP"
RAW=$TMP/raw
mkdir -p "$RAW" "$OUT"
PIDS=()
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "${BENCH_KEEP_TMP:-0}" = 1 ] || [ $rc -ne 0 ]; then
    echo "run.sh: logs and raw results kept in $TMP" >&2
  else
    rm -rf "$TMP"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# N distinct free ports: all held open together, so none is handed out twice.
free_ports() { python3 -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"; }
wait_port() { # port, seconds
  local i
  for ((i = 0; i < $2 * 20; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "run.sh: nothing listens on 127.0.0.1:$1 after $2 s" >&2
  return 1
}
read -r MOCK_PORT NGINX_PORT TG_PORT TG_METRICS_PORT TGA_PORT TGA_METRICS_PORT BARE_PORT <<<"$(free_ports 7)"
# Peers (Portkey, LiteLLM) and the system-call counts: benches/peers.sh.
# The peers are installed first, before anything is measured.
# shellcheck source=benches/peers.sh
. benches/peers.sh
peers_install

subst() { sed -e "s#@TMP@#$TMP#g; s#@PORT@#$2#g; s#@METRICS_PORT@#${3:-$TG_METRICS_PORT}#g; s#@MOCK_PORT@#$MOCK_PORT#g" "$1"; }

# ---------------------------------------------------------------- servers
log "starting mock provider, nginx and tollgate on 127.0.0.1 (temp dir $TMP)"
"$MOCK_PROVIDER" --listen "127.0.0.1:$MOCK_PORT" --threads 2 >"$TMP/mock.log" 2>&1 &
MOCK_PID=$!; PIDS+=("$MOCK_PID")
wait_port "$MOCK_PORT" 10

subst benches/nginx.conf "$NGINX_PORT" >"$TMP/nginx.conf"
mkdir -p "$TMP/nginx-client-body" "$TMP/nginx-proxy" "$TMP/nginx-fastcgi" "$TMP/nginx-uwsgi" "$TMP/nginx-scgi"
"$NGINX" -p "$TMP/" -c "$TMP/nginx.conf" -e "$TMP/nginx-error.log" >"$TMP/nginx.stdout" 2>&1 &
NGINX_PID=$!; PIDS+=("$NGINX_PID")
wait_port "$NGINX_PORT" 10

subst benches/tollgate-bench.yaml "$TG_PORT" >"$TMP/tollgate.yaml"
TOLLGATE_BENCH_OPENAI_KEY=sk-bench-dummy TOLLGATE_BENCH_ANTHROPIC_KEY=sk-ant-bench-dummy RUST_LOG=warn \
  "$TOLLGATE" -c "$TMP/tollgate.yaml" >"$TMP/tollgate.stdout" 2>"$TMP/tollgate.stderr" &
TG_PID=$!; PIDS+=("$TG_PID")
wait_port "$TG_PORT" 20
sleep 0.5
NGINX_WORKERS=$(pgrep -P "$NGINX_PID" | paste -sd, -)
# The floor (benches/pingora_bare.rs): Pingora's proxy with no tollgate
# logic, same threads, pool and listener buffering as tollgate's config.
"$PINGORA_BARE" "127.0.0.1:$BARE_PORT" "127.0.0.1:$MOCK_PORT" >"$TMP/bare.log" 2>&1 &
BARE_PID=$!; PIDS+=("$BARE_PID")
wait_port "$BARE_PORT" 10

declare -A URL=(
  [direct]="http://127.0.0.1:$MOCK_PORT"
  [nginx]="http://127.0.0.1:$NGINX_PORT"
  [tollgate]="http://127.0.0.1:$TG_PORT/openai_passthrough"
  [translated]="http://127.0.0.1:$TG_PORT/openai"
  [bare]="http://127.0.0.1:$BARE_PORT"
)
declare -A CPU_PIDS=([direct]="$MOCK_PID" [nginx]="$NGINX_WORKERS" [tollgate]="$TG_PID" [translated]="$TG_PID" [bare]="$BARE_PID")
PATHS=(direct nginx tollgate)
ALL_PATHS=(direct nginx tollgate translated)
# The translated path sends an OpenAI body naming an Anthropic model; tollgate
# sends the provider its own headers, not the client's, so the mock's knobs
# travel in the message text (x-mock-NAME=VALUE) instead of x-mock-* headers.
TRANSLATED_BODY='{"model":"anthropic/claude-sonnet-4-5","messages":[{"role":"user","content":"Say hi"}]}'
TRANSLATED_SSE_BODY='{"model":"anthropic/claude-sonnet-4-5","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hi x-mock-events=50 x-mock-eps=50 x-mock-ttfb-ms=0"}]}'
body_args() { # path: the driver options that select its request body (none = the driver's default)
  if [ "$1" = translated ]; then printf '%s\0%s\0' --body "$TRANSLATED_BODY"; fi
}
drv() { "$DRIVER" "$@" --threads 2 --clk-tck "$CLK_TCK"; }

mem_json() { # name pid[,pid]
  local total_rss=0 total_hwm=0 p
  for p in ${2//,/ }; do
    total_rss=$((total_rss + $(awk '/^VmRSS:/{print $2*1024}' "/proc/$p/status")))
    total_hwm=$((total_hwm + $(awk '/^VmHWM:/{print $2*1024}' "/proc/$p/status")))
  done
  printf '{"label":"%s","pids":"%s","rss":%s,"hwm":%s}\n' "$1" "$2" "$total_rss" "$total_hwm"
}

# --------------------------------------------------------- idle memory
mem_json tollgate-fresh "$TG_PID" >"$RAW/idle-tollgate-fresh.json"
mem_json nginx-fresh "$NGINX_WORKERS" >"$RAW/idle-nginx-fresh.json"
for p in "${PATHS[@]}"; do # a few requests so every path has warm connections
  drv rate --url "${URL[$p]}/v1/chat/completions" --rps 200 --duration 1 --warmup 0 --label "warm-$p" >/dev/null
done
sleep 1
mem_json tollgate-idle "$TG_PID" >"$RAW/idle-tollgate.json"
mem_json nginx-idle "$NGINX_WORKERS" >"$RAW/idle-nginx.json"
# The translated path is warmed after the idle figure, which stays comparable
# with earlier runs (passthrough only).
drv rate --url "${URL[translated]}/v1/chat/completions" --rps 200 --duration 1 --warmup 0 \
  --body "$TRANSLATED_BODY" --label warm-translated >"$RAW/warm-translated.json"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
if d["requests"] == 0 or d["errors"] + d["non_2xx"] > 0:
    sys.exit("run.sh: the translated path (/openai -> anthropic) fails: %d errors, %d non-2xx of %d" % (d["errors"], d["non_2xx"], d["requests"]))' \
  "$RAW/warm-translated.json"
rm -f "$RAW/warm-translated.json"

# --------------------------------------------------------- open loop
# Bare Pingora too: the added latency of the engine alone, the floor for
# tollgate's.
for r in "${RATES[@]}"; do
  for p in "${ALL_PATHS[@]}" bare; do
    log "open loop $r RPS via $p (${DUR}s + ${WARM}s warm-up)"
    mapfile -d '' body < <(body_args "$p")
    drv rate --url "${URL[$p]}/v1/chat/completions" --rps "$r" --duration "$DUR" --warmup "$WARM" \
      --conns 32 "${body[@]}" --label "$p" >"$RAW/rate-$p-$r.json"
  done
done

# --------------------------------------------------------- max rate
# Bare Pingora too: tollgate's CPU per request against the engine's floor.
for p in "${ALL_PATHS[@]}" bare; do
  log "max rate via $p (64 connections, closed loop, ${DUR}s)"
  mapfile -d '' body < <(body_args "$p")
  drv max --url "${URL[$p]}/v1/chat/completions" --conns 64 --duration "$DUR" --warmup "$WARM" \
    "${body[@]}" --pids "${CPU_PIDS[$p]}" --label "$p" >"$RAW/max-$p.json"
done

# Cross-check with wrk (C, one thread, same 64 connections): shows whether the
# Rust driver, not the proxy, was the limit.
cpu_ticks() { local t=0 p; for p in ${1//,/ }; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
for p in "${PATHS[@]}" bare; do
  log "max rate via $p with wrk (1 thread, 64 connections, ${DUR}s)"
  c0=$(cpu_ticks "${CPU_PIDS[$p]}")
  wrk -t1 -c64 -d"${DUR}s" -s benches/wrk-post.lua "${URL[$p]}/v1/chat/completions" >"$TMP/wrk-$p.txt" 2>&1 || true
  c1=$(cpu_ticks "${CPU_PIDS[$p]}")
  sed -n 's/^WRKJSON //p' "$TMP/wrk-$p.txt" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); d.update(label=sys.argv[1], cpu_seconds=int(sys.argv[2])/int(sys.argv[3])); print(json.dumps(d))' \
      "$p" "$((c1 - c0))" "$CLK_TCK" >"$RAW/wrk-$p.json" || rm -f "$RAW/wrk-$p.json"
done

# --------------------------------------------------------- SSE latency
# 300 streams, 50 at a time, 50 events each at 50 events/s (20 ms apart).
for p in "${PATHS[@]}"; do
  log "SSE via $p (300 streams x 50 events, 50 concurrent)"
  drv sse --url "${URL[$p]}/v1/chat/completions" --streams 50 --count 300 \
    --header 'x-mock-events: 50' --header 'x-mock-eps: 50' --header 'x-mock-ttfb-ms: 0' \
    --label "$p" >"$RAW/sse-$p.json"
done
# Translated: the mock's Anthropic stream (knobs in the message text), the
# stamp read back from each chunk's choices[0].delta.content.
log "SSE via translated (300 streams x 50 events, 50 concurrent)"
drv sse --url "${URL[translated]}/v1/chat/completions" --streams 50 --count 300 \
  --body "$TRANSLATED_SSE_BODY" --stamp content --label translated >"$RAW/sse-translated.json"

# --------------------------------------------------------- held streams
# One event per second per stream; the streams outlive the hold.
for p in nginx bare tollgate; do
  log "$STREAMS SSE streams held open via $p"
  drv hold --url "${URL[$p]}/v1/chat/completions" --streams "$STREAMS" --ramp-per-sec 1000 --hold-secs 4 \
    --header 'x-mock-events: 100000' --header 'x-mock-eps: 1' --pids "${CPU_PIDS[$p]}" \
    --label "$p" >"$RAW/hold-$p.json"
done

# --------------------------------------------------------- 1 GB bodies
for p in direct tollgate; do
  log "upload and download of $BIG bytes via $p"
  drv upload --url "${URL[$p]}/v1/upload" --bytes "$BIG" --pids "${CPU_PIDS[$p]}" --label "$p" >"$RAW/upload-$p.json"
  drv download --url "${URL[$p]}/v1/download?bytes=$BIG" --bytes "$BIG" --pids "${CPU_PIDS[$p]}" --label "$p" >"$RAW/download-$p.json"
done
mem_json tollgate-end "$TG_PID" >"$RAW/idle-tollgate-end.json"

# --------------------------------------------------------- peers, syscalls
# Portkey and LiteLLM next to tollgate at the same rate and connections, then
# strace -c -f over a fixed workload on every path (benches/peers.sh). The
# peers are started only now and stopped after, so they cost the figures above
# nothing.
peers_start
peers_measure
syscalls_measure
peers_stop

# --------------------------------------------------------- async jobs
# A second tollgate with the SQLite store, 16 workers and a virtual key
# (benches/tollgate-async-bench.yaml), started only now so it costs the
# other figures nothing. The first one is stopped to give it the CPUs.
kill "$TG_PID" 2>/dev/null || true; wait "$TG_PID" 2>/dev/null || true
log "async inference via a second tollgate (SQLite store, 16 workers)"
subst benches/tollgate-async-bench.yaml "$TGA_PORT" "$TGA_METRICS_PORT" >"$TMP/tollgate-async.yaml"
TOLLGATE_BENCH_OPENAI_KEY=sk-bench-dummy TOLLGATE_BENCH_ANTHROPIC_KEY=sk-ant-bench-dummy TOLLGATE_BENCH_VK=vk-bench RUST_LOG=warn \
  "$TOLLGATE" -c "$TMP/tollgate-async.yaml" >"$TMP/tollgate-async.stdout" 2>"$TMP/tollgate-async.stderr" &
TGA_PID=$!; PIDS+=("$TGA_PID")
wait_port "$TGA_PORT" 20
sleep 0.5
ASYNC_URL="http://127.0.0.1:$TGA_PORT/openai/v1/chat/completions"
ASYNC_BODY='{"model":"openai/gpt-4o-mini","messages":[{"role":"user","content":"Say hi"}]}'
# Warm-up: a few of each, so connections, the store and the pool are warm.
drv rate --url "$ASYNC_URL" --rps 200 --duration 1 --warmup 0 --body "$ASYNC_BODY" \
  --header 'x-bf-vk: vk-invalid' --label warm-401 >/dev/null
drv jobs --url "$ASYNC_URL" --jobs 200 --body "$ASYNC_BODY" \
  --header 'authorization: Bearer vk-bench' --header 'x-bf-async: true' --label warm-jobs >"$RAW/warm-jobs.json"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
if d["completed_200"] != d["jobs"]:
    sys.exit("run.sh: async jobs fail: submits %s, final polls %s" % (d["submit_statuses"], d["final_statuses"]))' \
  "$RAW/warm-jobs.json"
rm -f "$RAW/warm-jobs.json"
# Throughput: N jobs submitted back to back (32 connections), drained.
log "async: $ASYNC_JOBS jobs submitted at once, polled until done"
drv jobs --url "$ASYNC_URL" --jobs "$ASYNC_JOBS" --conns 32 --poll-conns 8 --drain-timeout 60 --body "$ASYNC_BODY" \
  --header 'authorization: Bearer vk-bench' --header 'x-bf-async: true' --label async >"$RAW/jobs-async.json"
# Latency: open loop at the same rate, sync 401 (unknown virtual key) then
# submissions (202), same route, same body; the jobs run meanwhile.
log "async: sync 401 at $ASYNC_RPS RPS (${DUR}s + ${WARM}s warm-up)"
drv rate --url "$ASYNC_URL" --rps "$ASYNC_RPS" --duration "$DUR" --warmup "$WARM" --conns 32 --body "$ASYNC_BODY" \
  --header 'x-bf-vk: vk-invalid' --label refusal-401 >"$RAW/async-401.json"
log "async: submissions at $ASYNC_RPS RPS (${DUR}s + ${WARM}s warm-up)"
drv rate --url "$ASYNC_URL" --rps "$ASYNC_RPS" --duration "$DUR" --warmup "$WARM" --conns 32 --body "$ASYNC_BODY" \
  --header 'authorization: Bearer vk-bench' --header 'x-bf-async: true' --label submit >"$RAW/async-submit.json"

# ------------------------------------------------------------- machine
git_rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || git_rev="$git_rev+uncommitted-src"
python3 - "$RAW/machine.json" "$git_rev" "$(( $(date +%s) - START_TS ))" <<'EOF'
import json, os, subprocess, sys, datetime
model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown")
mem_kb = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
json.dump({
    "date": subprocess.run(["date"], capture_output=True, text=True).stdout.strip(),
    "date_iso": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "nproc": os.cpu_count(),
    "cpu_model": model,
    "mem_total_gib": round(mem_kb / 1024 / 1024, 1),
    "kernel": os.uname().release,
    "git": sys.argv[2],
    "run_seconds": int(sys.argv[3]),
    "loadavg_at_end": open("/proc/loadavg").read().split()[:3],
}, open(sys.argv[1], "w"))
EOF

python3 benches/report.py "$RAW" "$OUT"

# Routing (SPEC 10): what a fallback adds to the p50 when the primary
# refuses connections (its own tollgate and mock; printed, not in the report).
log "routing: fallback latency"
bash benches/routing_latency.sh | tee "$RAW/routing-latency.md"
# The response cache (SPEC 11): an exact hit against the passthrough, hits
# against misses.
log "cache: exact hits"
bash benches/cache.sh | tee "$RAW/cache.md"
log "cache: semantic lookup over 100,000 entries"
cargo bench --locked --bench semantic_index 2>/dev/null | tee "$RAW/semantic-index.md"
# The request log store (SPEC 12): the passthrough's p50 with it off and
# on, and its queries over 1,000,000 rows.
log "logs: added latency"
bash benches/logs_latency.sh | tee "$RAW/logs-latency.md"
log "logs: queries over 1,000,000 rows"
cargo bench --locked --bench logs_query 2>/dev/null | tee "$RAW/logs-query.md"
log "reasoning replay memory: cost per request"
cargo bench --locked --bench reasoning_memory 2>/dev/null | tee "$RAW/reasoning-memory.md"
log "done in $(( $(date +%s) - START_TS )) s"
