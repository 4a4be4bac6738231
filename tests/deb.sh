#!/bin/bash
# The Debian package (issue 29), as root: build it (`make deb`), install it
# with dpkg, check what it put where, run the installed binary as the
# tollgate user on the installed config and serve one request, then remove,
# reinstall and purge. Always purges at the end; prints one PASS/FAIL line.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "deb package test: SKIPPED (dpkg -i needs root; make test runs as root on CI)"
    exit 0
fi
# Never touch an operator's install.
if dpkg -s tollgate >/dev/null 2>&1 || [ -e /etc/tollgate ]; then
    echo "deb package test: FAIL (tollgate is already installed here, or /etc/tollgate exists; refusing to touch it)"
    exit 1
fi

step="build"
pid=""
finish() {
    rc=$?
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    dpkg -P tollgate >/dev/null 2>&1 || true
    rm -rf /var/lib/tollgate /var/log/tollgate /run/tollgate /tmp/tollgate-deb-check.log
    if [ $rc -eq 0 ]; then
        echo "deb package test: PASS (install, files, check, unit verify, serve as tollgate, remove, reinstall, purge)"
    else
        echo "deb package test: FAIL at step: $step"
    fi
}
trap finish EXIT

fail() { echo "deb: $*" >&2; exit 1; }
# mode owner:group path
expect() {
    local got
    got=$(stat -c '%a %U:%G' "$3") || fail "missing $3"
    [ "$got" = "$1 $2" ] || fail "$3 is $got, expected $1 $2"
}

make --no-print-directory deb >/dev/null
deb=target/debian/tollgate_$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)-1_amd64.deb
[ -f "$deb" ] || fail "no package at $deb"

step="dpkg -i"
dpkg -i "$deb" >/dev/null

step="files, owners and modes"
expect 755 root:root /usr/bin/tollgate
expect 644 root:root /etc/tollgate/tollgate.yaml
expect 644 root:root /etc/tollgate/prices.yaml
expect 600 root:root /etc/tollgate/env
for f in prometheus.yml alerts.yml grafana-dashboard.json; do
    expect 644 root:root /usr/share/tollgate/$f
    cmp -s conf/$f /usr/share/tollgate/$f || fail "/usr/share/tollgate/$f differs from conf/$f"
done
cmp -s conf/prices.yaml /etc/tollgate/prices.yaml || fail "prices.yaml differs"
unit=/usr/lib/systemd/system/tollgate.service
expect 644 root:root $unit
for line in 'ExecStart=/usr/bin/tollgate -d -c /etc/tollgate/tollgate.yaml' 'EnvironmentFile=-/etc/tollgate/env' \
    'StateDirectory=tollgate' 'User=tollgate' 'NoNewPrivileges=yes' 'ProtectSystem=strict' 'CapabilityBoundingSet='; do
    grep -qxF "$line" $unit || fail "$unit lacks: $line"
done
! grep -q /usr/local $unit || fail "$unit still names /usr/local"
grep -qxF '  prices_file: /etc/tollgate/prices.yaml' /etc/tollgate/tollgate.yaml || fail "config does not read /etc/tollgate/prices.yaml"
dpkg-query -W -f='${Conffiles}\n' tollgate | grep -q ' /etc/tollgate/tollgate.yaml ' || fail "tollgate.yaml is no conffile"
dpkg-query -W -f='${Conffiles}\n' tollgate | grep -q ' /etc/tollgate/prices.yaml ' || fail "prices.yaml is no conffile"
IFS=: read -r _ _ uid _ _ home shell < <(getent passwd tollgate) || fail "no tollgate user"
[ "$uid" -lt 1000 ] || fail "tollgate is no system user (uid $uid)"
[ "$shell" = /usr/sbin/nologin ] || fail "tollgate's shell is $shell"
# Enabled (starts at boot), not started by the install.
[ -L /etc/systemd/system/multi-user.target.wants/tollgate.service ] || fail "unit not enabled"

step="tollgate check"
/usr/bin/tollgate check -c /etc/tollgate/tollgate.yaml >/dev/null 2>/tmp/tollgate-deb-check.log \
    || { cat /tmp/tollgate-deb-check.log >&2; fail "tollgate check failed"; }

step="systemd-analyze verify"
systemd-analyze verify $unit

step="serve one request as tollgate"
# What systemd would create for the unit (StateDirectory, LogsDirectory,
# RuntimeDirectory), owned by the service user.
install -d -o tollgate -g tollgate -m 0700 /var/lib/tollgate
install -d -o tollgate -g tollgate -m 0755 /var/log/tollgate /run/tollgate
conf=/etc/tollgate/tollgate.yaml
port=8080 mport=9091
if ss -Hltn | awk '{print $4}' | grep -qE ':(8080|9091)$'; then
    # The shipped ports are taken on this machine: the installed config with
    # only its two listen addresses moved to free loopback ports.
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    mport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    conf=/var/lib/tollgate/ports-moved.yaml
    sed -e "s/^  listen: \"0.0.0.0:8080\"/  listen: \"127.0.0.1:$port\"/" -e "s/^  metrics_listen: \"127.0.0.1:9091\"/  metrics_listen: \"127.0.0.1:$mport\"/" \
        /etc/tollgate/tollgate.yaml > $conf
    grep -q "127.0.0.1:$port" $conf || fail "could not move the listen port"
fi
setpriv --reuid=tollgate --regid=tollgate --init-groups --no-new-privs --inh-caps=-all \
    env -i RUST_LOG=info PATH=/usr/bin:/bin /usr/bin/tollgate -c $conf 2>/var/log/tollgate/test-stderr.log &
pid=$!
for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$mport/metrics" 2>/dev/null && break
    kill -0 $pid 2>/dev/null || { cat /var/log/tollgate/test-stderr.log >&2; fail "tollgate exited at start"; }
    sleep 0.1
done
# No keys yet (the env file is empty): every provider key is optional, so
# the gateway serves and names the missing provider.
body=$(curl -sS -w '\n%{http_code}' -H 'content-type: application/json' \
    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}' "http://127.0.0.1:$port/openai/v1/chat/completions")
[ "$(tail -1 <<<"$body")" = 503 ] || fail "expected 503, got: $body"
grep -q provider_not_configured <<<"$body" || fail "expected provider_not_configured: $body"
[ "$(stat -c %U /var/lib/tollgate/tollgate.db)" = tollgate ] || fail "the store is not under /var/lib/tollgate, owned by tollgate"
[ "$(ps -o user= -p $pid)" = tollgate ] || fail "not running as tollgate"
kill -TERM $pid
for _ in $(seq 50); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
! kill -0 $pid 2>/dev/null || fail "no exit within 5 s of SIGTERM"
pid=""

step="dpkg -r keeps conffiles"
echo "# edited by the operator" >> /etc/tollgate/tollgate.yaml
echo "OPENAI_API_KEY=sk-kept" >> /etc/tollgate/env
dpkg -r tollgate >/dev/null
[ ! -e /usr/bin/tollgate ] || fail "binary left after dpkg -r"
[ ! -e $unit ] || fail "unit left after dpkg -r"
[ -f /etc/tollgate/tollgate.yaml ] && [ -f /etc/tollgate/prices.yaml ] && [ -f /etc/tollgate/env ] || fail "dpkg -r removed a config file"
[ "$(dpkg-query -W -f='${Status}' tollgate)" = "deinstall ok config-files" ] || fail "status after dpkg -r: $(dpkg-query -W -f='${Status}' tollgate)"

step="reinstall keeps the edited config"
dpkg -i "$deb" >/dev/null
dpkg -i "$deb" >/dev/null
grep -qxF "# edited by the operator" /etc/tollgate/tollgate.yaml || fail "reinstall overwrote the edited tollgate.yaml"
grep -qxF "OPENAI_API_KEY=sk-kept" /etc/tollgate/env || fail "reinstall overwrote /etc/tollgate/env"
expect 600 root:root /etc/tollgate/env
/usr/bin/tollgate check -c /etc/tollgate/tollgate.yaml >/dev/null 2>/tmp/tollgate-deb-check.log \
    || { cat /tmp/tollgate-deb-check.log >&2; fail "tollgate check failed after the reinstall"; }

step="dpkg -P removes them"
dpkg -P tollgate >/dev/null
[ ! -e /etc/tollgate ] || fail "/etc/tollgate left after purge: $(ls -A /etc/tollgate)"
[ ! -e /etc/systemd/system/multi-user.target.wants/tollgate.service ] || fail "enable symlink left after purge"
! dpkg -s tollgate >/dev/null 2>&1 || fail "package still known after purge"
step="done"
