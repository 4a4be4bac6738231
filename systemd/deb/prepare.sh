#!/bin/sh
# Writes the packaged unit and config into target/deb/ from the ones in
# systemd/ (one source for both installs): the binary is /usr/bin/tollgate,
# keys come from /etc/tollgate/env, prices from /etc/tollgate/prices.yaml.
set -eu
out=target/deb
mkdir -p "$out"
sed -e 's#/usr/local/bin/tollgate#/usr/bin/tollgate#g' \
    -e 's#/etc/tollgate/tollgate\.env#/etc/tollgate/env#g' \
    -e 's#file:///usr/local/share/doc/tollgate/README.md#file:///usr/share/doc/tollgate/README.md#' \
    -e 's#Install with `make install`#Installed by the tollgate Debian package#' \
    systemd/tollgate.service > "$out/tollgate.service"
grep -q '^ExecStart=/usr/bin/tollgate ' "$out/tollgate.service"
grep -q '^EnvironmentFile=-/etc/tollgate/env$' "$out/tollgate.service"
grep -q '^StateDirectory=tollgate$' "$out/tollgate.service"
sed -e 's#installed by `make install`#installed by the Debian package (a conffile)#' \
    -e 's#/etc/tollgate/tollgate\.env#/etc/tollgate/env#g' \
    -e 's|^tollgate:$|tollgate:\n  # The price table (a conffile: edits survive upgrades).\n  prices_file: /etc/tollgate/prices.yaml|' \
    systemd/tollgate.yaml > "$out/tollgate.yaml"
grep -q '^  prices_file: /etc/tollgate/prices.yaml$' "$out/tollgate.yaml"
