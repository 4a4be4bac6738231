# tollgate: the two commands of the README.
#   make run    build and run the gateway on conf/tollgate.yaml
#   make test   build, run the unit tests and the end-to-end suite (real SDKs)
# Both install what a fresh Debian machine lacks (cmake, libssl-dev, ...).

SHELL := /bin/bash
CONF ?= conf/tollgate.yaml
VENV ?= .venv
PYTHON ?= python3
# Link Debian's OpenSSL instead of building a vendored copy (minutes saved).
export OPENSSL_NO_VENDOR := 1

.PHONY: run build test unit e2e deps venv node bench soak fuzz clean install deb

run: build
	./target/release/tollgate -c $(CONF)

build: deps
	cargo build --release --locked

# The hostile-client tests hold 10,000 connections: raise the soft
# descriptor limit to the hard one for the test run.
test: build venv node
	ulimit -n $$(ulimit -Hn) 2>/dev/null || true; cargo test --release --locked
	$(VENV)/bin/python -m pytest tests/e2e -q -p no:cacheprovider
	bash tests/deb.sh

unit: deps
	ulimit -n $$(ulimit -Hn) 2>/dev/null || true; cargo test --release --locked

# Long runs, not part of `make test`: a 10-minute soak (prints request
# count, RSS and descriptors, then 20 graceful upgrades under keep-alive
# load) and a long property-based fuzz run.
SOAK_SECS ?= 600
soak: build
	ulimit -n $$(ulimit -Hn) 2>/dev/null || true; TOLLGATE_SOAK_SECS=$(SOAK_SECS) cargo test --release --locked --test soak -- --nocapture --include-ignored

FUZZ_CASES ?= 200000
fuzz: deps
	TOLLGATE_FUZZ_CASES=$(FUZZ_CASES) cargo test --release --locked --test fuzz

# Benchmark against a direct connection and nginx (benches/README.md).
bench: deps
	bash benches/run.sh

e2e: build venv node
	$(VENV)/bin/python -m pytest tests/e2e -q -p no:cacheprovider

# System packages: cmake (Pingora's zlib-ng build), pkg-config + libssl-dev
# (system OpenSSL), systemd (systemd-analyze checks the unit), redis-server
# (the shared-counter tests start their own), python3-venv (the SDK test venv),
# chromium (the dashboard's browser test drives it through Playwright),
# nodejs and npm when there is no node (the Node SDK tests).
deps:
	@missing=""; \
	for p in cmake pkg-config libssl-dev systemd curl redis-server chromium; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	$(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# The venv is rebuilt when requirements change; SDKs are the newest release.
venv: $(VENV)/.installed
$(VENV)/.installed: tests/e2e/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q --upgrade -r tests/e2e/requirements.txt
	touch $@

# The openai Node SDK for the Node tests, reinstalled when package.json changes.
node: tests/e2e/node/.installed
tests/e2e/node/.installed: tests/e2e/node/package.json
	cd tests/e2e/node && npm install --no-audit --no-fund --no-package-lock --silent
	touch $@

clean:
	cargo clean
	rm -rf $(VENV) tests/e2e/node/node_modules tests/e2e/node/.installed

# The Debian package (README, "Deploy"), from the release binary already
# built (`cargo deb --no-build`). cargo-deb builds it from Cargo.toml's
# [package.metadata.deb] with no debian/ tree to keep, writes the systemd
# maintainer snippets the way dh_installsystemd does, and is installed here
# (pinned by its lock file) when missing; Debian does not package it.
deb: build
	command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
	sh systemd/deb/prepare.sh
	cargo deb --no-build --locked --strip --output target/debian/

# Install the binary, the systemd unit and an example config (kept if
# present). PREFIX and DESTDIR work as usual.
PREFIX ?= /usr/local
install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)/etc/tollgate $(DESTDIR)/etc/systemd/system $(DESTDIR)$(PREFIX)/share/doc/tollgate
	install -m 0755 target/release/tollgate $(DESTDIR)$(PREFIX)/bin/tollgate.new
	mv -f $(DESTDIR)$(PREFIX)/bin/tollgate.new $(DESTDIR)$(PREFIX)/bin/tollgate
	install -m 0644 systemd/tollgate.service $(DESTDIR)/etc/systemd/system/tollgate.service
	[ -e $(DESTDIR)/etc/tollgate/tollgate.yaml ] || install -m 0640 systemd/tollgate.yaml $(DESTDIR)/etc/tollgate/tollgate.yaml
	[ -e $(DESTDIR)/etc/tollgate/tollgate.env ] || install -m 0600 /dev/null $(DESTDIR)/etc/tollgate/tollgate.env
	install -m 0644 README.md conf/prices.yaml conf/alerts.yml conf/prometheus.yml conf/grafana-dashboard.json $(DESTDIR)$(PREFIX)/share/doc/tollgate/
	@if [ -z "$(DESTDIR)" ]; then \
	  id tollgate >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin tollgate; \
	  chown root:tollgate /etc/tollgate/tollgate.yaml /etc/tollgate/tollgate.env; \
	  chmod 0640 /etc/tollgate/tollgate.env; \
	  command -v systemctl >/dev/null && systemctl daemon-reload || true; \
	fi
