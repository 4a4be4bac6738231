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

.PHONY: run build test unit e2e deps venv bench clean

run: build
	./target/release/tollgate -c $(CONF)

build: deps
	cargo build --release --locked

test: build venv
	cargo test --release --locked
	$(VENV)/bin/python -m pytest tests/e2e -q -p no:cacheprovider

unit: deps
	cargo test --release --locked

e2e: build venv
	$(VENV)/bin/python -m pytest tests/e2e -q -p no:cacheprovider

# System packages: cmake (Pingora's zlib-ng build), pkg-config + libssl-dev
# (system OpenSSL), systemd (systemd-analyze checks the unit), python3-venv
# (the SDK test venv).
deps:
	@missing=""; \
	for p in cmake pkg-config libssl-dev systemd; do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	$(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
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

clean:
	cargo clean
	rm -rf $(VENV)
