# Sourced by the bench scripts: `bench_tools NAME...` builds the named bench
# targets (benches/NAME.rs, release, --locked) and prints NAME_IN_CAPS=path
# for each, to `eval`:  eval "$(bench_tools mock_provider driver)"
bench_tools() {
  local args=() n
  for n in "$@"; do args+=(--bench "$n"); done
  cargo build --release --locked "${args[@]}" --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
want = set(sys.argv[1:])
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in want:
        print("%s=%s" % (m["target"]["name"].upper(), m["executable"]))
' "$@"
}

# wrk, installed with apt-get when missing.
need_wrk() {
  command -v wrk >/dev/null 2>&1 && return
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get install -y -q wrk >/dev/null
}

# N free ports on 127.0.0.1, on one line.
free_ports() {
  python3 -c 'import socket, sys
held = [socket.socket() for _ in range(int(sys.argv[1]))]
[h.bind(("127.0.0.1", 0)) for h in held]
print(*[h.getsockname()[1] for h in held])' "$1"
}
