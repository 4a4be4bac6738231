# Peers and system-call counts for benches/run.sh (issue 15). Sourced by
# run.sh, which defines TMP, RAW, MOCK_PORT, PIDS, URL, CPU_PIDS, drv,
# free_ports, wait_port, mem_json, log, TRANSLATED_BODY. Nothing here aborts
# the bench: a peer that cannot be installed, started or reached is written
# down (raw/peer-NAME.json) and left out.
#
#   portkey   npm @portkey-ai/gateway@$PORTKEY_VERSION, node with a preload
#             that makes its listener bind 127.0.0.1 (its CLI takes --port=N
#             and no host); /v1/chat/completions with x-portkey-provider and
#             x-portkey-custom-host: http://127.0.0.1:MOCK/v1 (it appends
#             /chat/completions or /messages to the custom host).
#   litellm   PyPI litellm[proxy]==$LITELLM_VERSION in a venv; litellm
#             --config (no database, master key, telemetry off) --num_workers 1;
#             /openai_passthrough/v1/chat/completions with OPENAI_API_BASE at
#             the mock, /chat/completions with model_list entries.

PORTKEY_VERSION=${BENCH_PORTKEY_VERSION:-1.15.2}
LITELLM_VERSION=${BENCH_LITELLM_VERSION:-1.108.7}
PEERS=${BENCH_PEERS:-1}
PEERS_DIR=${BENCH_PEERS_DIR:-$TMP/peers}
PEER_RPS=${BENCH_PEER_RPS:-200}
PEER_CONNS=32
STRACE=${BENCH_STRACE:-1}
STRACE_RPS=${BENCH_STRACE_RPS:-1000}
STRACE_SECS=${BENCH_STRACE_SECS:-3}
STRACE_CONNS=8

declare -A PEER_ARGS=()    # path -> driver options, one per line
declare -A PEER_URL=()     # path -> URL up to /v1/chat/completions (exclusive)
declare -A PEER_PIDS=()    # path -> pids (comma-separated, process tree)
declare -A PEER_PID=()     # peer -> main pid
declare -A PEER_RATE=()    # path -> the open-loop rate it sustains (peers_measure)
PEER_PATHS=()              # paths that answered 2xx in the check

peer_note() { # name installed started note [version]
  python3 -c 'import json,sys; print(json.dumps({"name":sys.argv[1],"installed":sys.argv[2]=="1","started":sys.argv[3]=="1","note":sys.argv[4],"version":sys.argv[5]}))' \
    "$1" "$2" "$3" "$4" "${5:-}" >"$RAW/peer-$1.json"
  [ -z "$4" ] || echo "run.sh: peer $1: $4" >&2
}

tree_pids() { # pid -> pid and every descendant, comma-separated
  local out=$1 c
  for c in $(pgrep -P "$1" 2>/dev/null); do out="$out,$(tree_pids "$c")"; done
  echo "$out"
}

# ----------------------------------------------------------------- install
peers_install() {
  [ "$PEERS" = 1 ] || return 0
  mkdir -p "$PEERS_DIR"
  local t0
  if [ -f "$PEERS_DIR/portkey/node_modules/@portkey-ai/gateway/build/start-server.js" ]; then
    log "peers: portkey already installed in $PEERS_DIR/portkey"
  elif ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    peer_note portkey 0 0 "node/npm not found (apt-get install nodejs npm)"
  else
    t0=$(date +%s)
    log "peers: npm install @portkey-ai/gateway@$PORTKEY_VERSION into $PEERS_DIR/portkey (prints when done)"
    if ! npm install --no-audit --no-fund --loglevel=error --prefix "$PEERS_DIR/portkey" \
      "@portkey-ai/gateway@$PORTKEY_VERSION" >"$TMP/npm-portkey.log" 2>&1; then
      peer_note portkey 0 0 "npm install failed: $(tail -n 3 "$TMP/npm-portkey.log" | tr '\n' ' ')"
    else
      log "peers: portkey installed in $(($(date +%s) - t0)) s"
    fi
  fi
  if [ -x "$PEERS_DIR/litellm/bin/litellm" ]; then
    log "peers: litellm already installed in $PEERS_DIR/litellm"
  else
    t0=$(date +%s)
    log "peers: pip install litellm[proxy]==$LITELLM_VERSION into a venv in $PEERS_DIR/litellm (a few minutes; prints when done)"
    if ! { python3 -m venv "$PEERS_DIR/litellm" &&
      "$PEERS_DIR/litellm/bin/pip" install -q --disable-pip-version-check "litellm[proxy]==$LITELLM_VERSION"; } \
      >"$TMP/pip-litellm.log" 2>&1; then
      peer_note litellm 0 0 "pip install failed: $(tail -n 3 "$TMP/pip-litellm.log" | tr '\n' ' ')"
      rm -f "$PEERS_DIR/litellm/bin/litellm"
    else
      log "peers: litellm installed in $(($(date +%s) - t0)) s"
    fi
  fi
}

# ------------------------------------------------------------------- start
# One request of each path must answer 2xx before the path is measured.
peer_check() { # path
  local a=() d
  [ -z "${PEER_ARGS[$1]}" ] || mapfile -t a <<<"${PEER_ARGS[$1]}"
  if ! drv rate --url "${PEER_URL[$1]}/v1/chat/completions" --rps 50 --duration 1 --warmup 0 --conns 2 \
    "${a[@]}" --label "check-$1" >"$TMP/check-$1.json" 2>"$TMP/check-$1.err"; then
    echo "driver failed: $(tail -n 2 "$TMP/check-$1.err" | tr '\n' ' ')"
    return 1
  fi
  d=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
if d["requests"] == 0 or d["errors"] + d["non_2xx"] > 0:
    print("%d errors, statuses %s of %d requests" % (d["errors"], d["statuses"], d["requests"]))' "$TMP/check-$1.json")
  [ -z "$d" ] || { echo "$d"; return 1; }
}

peer_add() { # peer path url args
  PEER_URL[$2]=$3
  PEER_ARGS[$2]=$4
  PEER_PIDS[$2]=$(tree_pids "${PEER_PID[$1]}")
  local why
  if why=$(peer_check "$2"); then
    PEER_PATHS+=("$2")
    return 0
  fi
  kill -0 "$MOCK_PID" 2>/dev/null || why="$why; the mock provider (pid $MOCK_PID) is no longer running"
  echo "run.sh: peer path $2 fails, left out: $why (log: $TMP/$1.log)" >&2
  PEER_FAILED="${PEER_FAILED:+$PEER_FAILED; }$2: $why"
  return 1
}

peers_start() {
  [ "$PEERS" = 1 ] || return 0
  local port key pk="$PEERS_DIR/portkey/node_modules/@portkey-ai/gateway/build/start-server.js"
  if [ -f "$pk" ]; then
    read -r port <<<"$(free_ports 1)"
    cat >"$TMP/loopback.mjs" <<'EOF'
// Preloaded with node --import: a server told to listen on a port without a
// host listens on 127.0.0.1 only (Portkey's CLI takes --port=N and no host).
import net from "node:net";
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === "number" && typeof args[1] !== "string") {
    if (args.length > 1 && args[1] === undefined) args[1] = "127.0.0.1";
    else args.splice(1, 0, "127.0.0.1");
  }
  return listen.apply(this, args);
};
EOF
    log "peers: starting portkey on 127.0.0.1:$port"
    NODE_ENV=production node --import "$TMP/loopback.mjs" "$pk" "--port=$port" --headless >"$TMP/portkey.log" 2>&1 &
    PEER_PID[portkey]=$!; PIDS+=("$!")
    if wait_port "$port" 60 && sleep 1.2; then # it prints "ready" after a 1 s spinner
      local u="http://127.0.0.1:$port" h="x-portkey-custom-host: http://127.0.0.1:$MOCK_PORT/v1"
      PEER_FAILED=""
      peer_add portkey portkey "$u" $'--header\ncontent-type: application/json\n--header\nx-portkey-provider: openai\n--header\n'"$h" || true
      peer_add portkey portkey-translated "$u" $'--header\ncontent-type: application/json\n--header\nx-portkey-provider: anthropic\n--header\n'"$h"$'\n--body\n{"model":"claude-sonnet-4-5","max_tokens":256,"messages":[{"role":"user","content":"Say hi"}]}' || true
      peer_note portkey 1 1 "$PEER_FAILED" "$PORTKEY_VERSION"
    else
      peer_note portkey 1 0 "did not listen within 60 s: $(tail -n 3 "$TMP/portkey.log" | tr '\n' ' ')" "$PORTKEY_VERSION"
    fi
  fi
  if [ -x "$PEERS_DIR/litellm/bin/litellm" ]; then
    read -r port <<<"$(free_ports 1)"
    key=sk-bench-$(python3 -c 'import secrets; print(secrets.token_hex(24))')
    cat >"$TMP/litellm.yaml" <<EOF
# LiteLLM proxy for benches/run.sh: the mock as every provider, no database.
model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: http://127.0.0.1:$MOCK_PORT/v1
      api_key: os.environ/OPENAI_API_KEY
  - model_name: anthropic/claude-sonnet-4-5
    litellm_params:
      model: anthropic/claude-sonnet-4-5
      api_base: http://127.0.0.1:$MOCK_PORT
      api_key: os.environ/ANTHROPIC_API_KEY
litellm_settings:
  telemetry: false
EOF
    log "peers: starting litellm on 127.0.0.1:$port (a slow start: up to a few minutes)"
    LITELLM_MASTER_KEY=$key OPENAI_API_BASE="http://127.0.0.1:$MOCK_PORT" OPENAI_API_KEY=sk-bench-dummy \
      ANTHROPIC_API_KEY=sk-ant-bench-dummy LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_TELEMETRY=False \
      LITELLM_LOG=ERROR DISABLE_SCHEMA_UPDATE=True \
      "$PEERS_DIR/litellm/bin/litellm" --config "$TMP/litellm.yaml" --host 127.0.0.1 --port "$port" \
      --num_workers 1 --telemetry False >"$TMP/litellm.log" 2>&1 &
    PEER_PID[litellm]=$!; PIDS+=("$!")
    if wait_port "$port" 300; then
      local u="http://127.0.0.1:$port" h=$'--header\ncontent-type: application/json\n--header\nauthorization: Bearer '"$key"
      PEER_FAILED=""
      peer_add litellm litellm "$u/openai_passthrough" "$h" || true
      peer_add litellm litellm-translated "$u" "$h"$'\n--body\n'"$TRANSLATED_BODY" || true
      peer_add litellm litellm-openai "$u" "$h" || true
      peer_note litellm 1 1 "$PEER_FAILED" "$LITELLM_VERSION"
    else
      peer_note litellm 1 0 "did not listen within 300 s: $(tail -n 3 "$TMP/litellm.log" | tr '\n' ' ')" "$LITELLM_VERSION"
    fi
  fi
}

peers_stop() {
  local p
  for p in "${PEER_PID[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
}

# ----------------------------------------------------------------- measure
# tollgate's paths next to the peers', over the same 32 connections: max RPS
# and CPU (closed loop) first; then added p50/p99 (open loop) at a low rate
# the path sustains: BENCH_PEER_RPS, or for a peer whose max RPS is below
# twice that, the highest of 100, 50, 20, 10, 5, 2, 1 RPS at or under half
# its max. direct, tollgate and translated run at every rate used, so each
# peer is compared with tollgate at its own rate.
peer_args() { # path -> driver options in the array A
  A=()
  [ -z "${PEER_ARGS[$1]}" ] || mapfile -t A <<<"${PEER_ARGS[$1]}"
}

peer_rate_for() { # max RPS -> the open-loop rate
  python3 -c 'import sys
top, mx = float(sys.argv[1]), float(sys.argv[2])
if mx >= 2 * top:
    print(int(top)); sys.exit()
print(next((r for r in (100, 50, 20, 10, 5, 2) if r <= min(top, mx / 2)), 1))' "$PEER_RPS" "$1"
}

peers_measure() {
  [ "$PEERS" = 1 ] || return 0
  local p r mx rates=("$PEER_RPS")
  PEER_URL[tollgate]=${URL[tollgate]}; PEER_ARGS[tollgate]=""; PEER_PIDS[tollgate]=${CPU_PIDS[tollgate]}
  PEER_URL[translated]=${URL[translated]}; PEER_ARGS[translated]=$'--body\n'"$TRANSLATED_BODY"
  PEER_PIDS[translated]=${CPU_PIDS[translated]}
  PEER_URL[direct]=${URL[direct]}; PEER_ARGS[direct]=""
  # Bare Pingora (the floor: the engine with no gateway code) runs beside
  # tollgate at every rate, so a peer's ratio can be read against the engine too.
  PEER_URL[bare]=${URL[bare]}; PEER_ARGS[bare]=""; PEER_PIDS[bare]=${CPU_PIDS[bare]}
  for p in "${PEER_PATHS[@]}"; do # warm-up: JITs, pools, caches
    peer_args "$p"
    drv rate --url "${PEER_URL[$p]}/v1/chat/completions" --rps 20 --duration 2 --warmup 0 --conns 8 \
      "${A[@]}" --label "warm-$p" >/dev/null || true
  done
  for p in portkey litellm; do
    [ -n "${PEER_PID[$p]:-}" ] && kill -0 "${PEER_PID[$p]}" 2>/dev/null || continue
    mem_json "$p-idle" "$(tree_pids "${PEER_PID[$p]}")" >"$RAW/peer-mem-$p-idle.json" || true
  done
  mem_json tollgate-idle "$TG_PID" >"$RAW/peer-mem-tollgate-idle.json"
  mem_json bare-idle "${CPU_PIDS[bare]}" >"$RAW/peer-mem-bare-idle.json" || true
  for p in tollgate translated bare "${PEER_PATHS[@]}"; do
    log "peers: max rate via $p ($PEER_CONNS connections, closed loop, ${DUR}s)"
    peer_args "$p"
    drv max --url "${PEER_URL[$p]}/v1/chat/completions" --conns "$PEER_CONNS" --duration "$DUR" --warmup "$WARM" \
      "${A[@]}" --pids "${PEER_PIDS[$p]}" --label "$p" >"$RAW/peer-max-$p.json" || rm -f "$RAW/peer-max-$p.json"
  done
  for p in "${PEER_PATHS[@]}"; do
    mx=0
    [ ! -f "$RAW/peer-max-$p.json" ] || mx=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rps"])' "$RAW/peer-max-$p.json")
    PEER_RATE[$p]=$(peer_rate_for "$mx")
    [[ " ${rates[*]} " == *" ${PEER_RATE[$p]} "* ]] || rates+=("${PEER_RATE[$p]}")
  done
  for r in "${rates[@]}"; do
    for p in direct tollgate translated bare; do
      log "peers: open loop $r RPS via $p (${DUR}s + ${WARM}s warm-up)"
      peer_args "$p"
      drv rate --url "${PEER_URL[$p]}/v1/chat/completions" --rps "$r" --duration "$DUR" --warmup "$WARM" \
        --conns "$PEER_CONNS" "${A[@]}" --label "$p" >"$RAW/peer-rate-$p-$r.json" || rm -f "$RAW/peer-rate-$p-$r.json"
    done
  done
  for p in "${PEER_PATHS[@]}"; do
    r=${PEER_RATE[$p]}
    log "peers: open loop $r RPS via $p (${DUR}s + ${WARM}s warm-up)"
    peer_args "$p"
    drv rate --url "${PEER_URL[$p]}/v1/chat/completions" --rps "$r" --duration "$DUR" --warmup "$WARM" \
      --conns "$PEER_CONNS" "${A[@]}" --label "$p" >"$RAW/peer-rate-$p-$r.json" || rm -f "$RAW/peer-rate-$p-$r.json"
  done
  for p in portkey litellm; do
    [ -n "${PEER_PID[$p]:-}" ] && kill -0 "${PEER_PID[$p]}" 2>/dev/null || continue
    mem_json "$p-end" "$(tree_pids "${PEER_PID[$p]}")" >"$RAW/peer-mem-$p-end.json" || true
  done
  mem_json tollgate-end "$TG_PID" >"$RAW/peer-mem-tollgate-end.json"
  mem_json bare-end "${CPU_PIDS[bare]}" >"$RAW/peer-mem-bare-end.json" || true
}

# ---------------------------------------------------------------- syscalls
# strace -c -f attached to the serving process(es) over a fixed open-loop
# workload; the count divided by the requests the driver sent. tollgate,
# bare Pingora and nginx at BENCH_STRACE_RPS; a peer at no more than the rate
# it sustains.
syscalls_one() { # label pids url rps seconds [driver args...]
  local label=$1 pids=$2 url=$3 rps=$4 secs=$5 sp i a=() p
  shift 5
  for p in ${pids//,/ }; do a+=(-p "$p"); done
  strace -c -f -o "$RAW/strace-$label.txt" "${a[@]}" 2>"$TMP/strace-$label.err" &
  sp=$!
  for ((i = 0; i < 200; i++)); do grep -q attached "$TMP/strace-$label.err" 2>/dev/null && break; sleep 0.05; done
  if ! grep -q attached "$TMP/strace-$label.err" 2>/dev/null; then
    echo "run.sh: strace did not attach to $pids: $(cat "$TMP/strace-$label.err")" >&2
    kill "$sp" 2>/dev/null || true; wait "$sp" 2>/dev/null || true
    return 0
  fi
  sleep 0.5 # every thread attached (-f walks /proc/PID/task)
  log "system calls via $label: strace -c -f, $rps RPS for ${secs}s over $STRACE_CONNS connections"
  drv rate --url "$url/v1/chat/completions" --rps "$rps" --duration "$secs" --warmup 0 \
    --conns "$STRACE_CONNS" "$@" --label "$label" >"$TMP/strace-$label-driver.json" || true
  kill -INT "$sp" 2>/dev/null || true
  wait "$sp" 2>/dev/null || true
  kill -0 "$MOCK_PID" 2>/dev/null || echo "run.sh: the mock provider (pid $MOCK_PID) is no longer running" >&2
  python3 benches/syscalls.py "$RAW/strace-$label.txt" "$TMP/strace-$label-driver.json" "$label" "$pids" \
    >"$RAW/syscalls-$label.json" || { echo "run.sh: no strace summary for $label" >&2; rm -f "$RAW/syscalls-$label.json"; }
}

syscalls_measure() {
  [ "$STRACE" = 1 ] || return 0
  if ! command -v strace >/dev/null 2>&1; then
    echo "run.sh: strace not installed, no system-call counts" >&2
    return 0
  fi
  local p a r s
  for p in tollgate translated bare nginx "${PEER_PATHS[@]}"; do
    case $p in
      tollgate | nginx | bare) a=() ;;
      translated) a=(--body "$TRANSLATED_BODY") ;;
      *) a=(); [ -z "${PEER_ARGS[$p]}" ] || mapfile -t a <<<"${PEER_ARGS[$p]}" ;;
    esac
    case $p in
      tollgate | translated | nginx | bare)
        syscalls_one "$p" "${CPU_PIDS[$p]}" "${URL[$p]}" "$STRACE_RPS" "$STRACE_SECS" "${a[@]}" ;;
      *) # a peer: at most the rate it sustains, for about as many requests (at most 4x as long)
        r=$(( ${PEER_RATE[$p]:-$STRACE_RPS} < STRACE_RPS ? ${PEER_RATE[$p]:-$STRACE_RPS} : STRACE_RPS ))
        s=$(( (STRACE_RPS * STRACE_SECS + r - 1) / r )); [ "$s" -le $((STRACE_SECS * 4)) ] || s=$((STRACE_SECS * 4))
        syscalls_one "$p" "$(tree_pids "${PEER_PID[${p%%-*}]}")" "${PEER_URL[$p]}" "$r" "$s" "${a[@]}" ;;
    esac
  done
}
