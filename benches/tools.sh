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
