# Set-up and everyday commands. `make run` and `make test` work on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# two stamps: `make run` installs the server's runtime dependencies only; the test
# toolchain (pytest, ruff, mypy, ...) comes with `make install` / `make test`
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test
ARGS ?=
# most tests wait on sockets: a few workers on 2 cores finish the suite in about half the time
PYTEST_WORKERS ?= 3

.PHONY: run test lint typecheck pytest bench install install-run deps-test deps-interop clean

$(RUN_STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $(RUN_STAMP)

$(TEST_STAMP): $(RUN_STAMP)
	$(PIP) install -q -e '.[test]'
	touch $(TEST_STAMP)

install-run: $(RUN_STAMP)

install: $(TEST_STAMP)

# serves from the checkout; `. .venv/bin/activate` puts `pushwire` on PATH in your shell
run: install-run
	$(VENV)/bin/pushwire serve $(ARGS)

# Debian tools the tests drive: mosquitto_pub/mosquitto_sub; mosquitto for benches;
# redis-server for the engine=redis and --workers tests (private instances on free ports,
# tests/helpers/redis.py); chromium and its WebDriver for the browser tests (web console,
# CORS, Origin checks); node and npm for the MQTT.js interop tests.
deps-test:
	@bash scripts/ensure-debian-packages.sh mosquitto-clients mosquitto redis-server chromium chromium-driver
	@# Debian's nodejs + npm, unless a node with npm is there already (NodeSource's nodejs
	@# bundles npm and conflicts with Debian's npm package)
	@command -v node >/dev/null && command -v npm >/dev/null || bash scripts/ensure-debian-packages.sh nodejs npm

# MQTT.js (npm `mqtt`, pinned by package-lock.json) in tests/interop/mqttjs/node_modules, for
# tests/integration/test_interop_mqttjs.py. Offline, the install fails and those tests skip.
MQTTJS := tests/interop/mqttjs
deps-interop: deps-test
	@test -d $(MQTTJS)/node_modules/mqtt || npm ci --prefix $(MQTTJS) --no-audit --no-fund --loglevel=error \
		|| echo "MQTT.js not installed (offline?): its interop tests will be skipped"

lint: install
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/ruff format --check src tests bench examples

typecheck: install
	$(VENV)/bin/mypy

pytest: install deps-test deps-interop
	$(VENV)/bin/pytest -q -n $(PYTEST_WORKERS) $(ARGS)

test: install deps-test lint typecheck pytest

# Both suites run even when one fails; ARGS/MQTT_ARGS go to the MQTT bench, HTTP_ARGS to HTTP.
bench: install
	@bash scripts/ensure-debian-packages.sh mosquitto mosquitto-clients nginx libnginx-mod-nchan redis-server
	$(VENV)/bin/pushwire bench mqtt $(ARGS) $(MQTT_ARGS); mqtt=$$?; \
	$(VENV)/bin/pushwire bench http $(HTTP_ARGS); http=$$?; \
	test $$mqtt -eq 0 && test $$http -eq 0

clean:
	rm -rf $(VENV) pushwire-data .pytest_cache .mypy_cache .ruff_cache
