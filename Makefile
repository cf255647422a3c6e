# stranger-bridge: `make run` starts the daemon (hub + web page on 127.0.0.1:8080), `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two pytest-xdist workers; the tests of the one real Synapse share a worker (tests/conftest.py).
PYTEST_ARGS ?= -n 2 --dist loadgroup
STAMP := $(VENV)/.installed-$(shell sha1sum requirements.lock pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test bench system-deps lock clean

# Install output goes to stderr so `make bench` prints nothing but JSON lines on stdout.
$(STAMP): requirements.lock pyproject.toml
	@echo "installing the pinned dependencies into $(VENV)" >&2
	@$(PYTHON) -m venv $(VENV) >&2
	@$(BIN)/pip install --quiet --upgrade pip >&2
	@$(BIN)/pip install --quiet -r requirements.lock >&2
	@$(BIN)/pip install --quiet --no-deps -e . >&2 2>/dev/null || $(BIN)/pip install --no-deps -e . >&2
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/stranger-bridge run $(if $(CONFIG),-c $(CONFIG),)

# Integration tests need redis-server, chromium and systemd-analyze: install them when missing.
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null \
	    || { echo "could not install:$$missing" >&2; exit 1; }; \
	fi

test: $(STAMP) system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	@$(BIN)/python -m bench $(BENCH)

# Re-pin every dependency after editing pyproject.toml.
lock:
	rm -rf /tmp/sb-lock && $(PYTHON) -m venv /tmp/sb-lock
	/tmp/sb-lock/bin/pip install --quiet ".[all,test]"
	/tmp/sb-lock/bin/pip freeze --exclude stranger-bridge > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
