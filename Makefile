# Skein: `make run` starts the local 3-node cluster, `make test` runs the test suite.
# Both install what is missing first (Debian packages, the .venv from requirements.txt).

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# command:package pairs installed with apt when the command is missing
APT_DEPS := etcd:etcd-server etcdctl:etcd-client redis-server:redis-server haproxy:haproxy node:nodejs npm:npm chromium:chromium nginx:nginx prometheus:prometheus
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install apt-deps run run-without run-node test test-unit test-cluster lint clean docs bench-idle chaos \
	bench bench-compare profile simulate

install: apt-deps $(VENV)/.installed tests/clients/js/node_modules/.installed

apt-deps:
	@missing=""; for pair in $(APT_DEPS); do cmd=$${pair%%:*}; pkg=$${pair#*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || missing="$$missing $$pkg"; done; \
	[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || missing="$$missing libnginx-mod-stream"; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; fi

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

# The official JS SDK (npm wukongimjssdk 1.0.4), bundled for Node, used by the protocol tests.
tests/clients/js/node_modules/.installed: tests/clients/js/package.json tests/clients/js/package-lock.json
	cd tests/clients/js && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent
	touch $@

# The same SDK bundled for browsers (the demo chat page, api/static/demo/), git-ignored.
install: api/static/demo/vendor/wkjs.js
api/static/demo/vendor/wkjs.js: tests/clients/js/node_modules/.installed tests/clients/js/src/wkjs-browser-entry.js
	cd tests/clients/js && npm run build:browser --silent
	touch $@

# The whole local cluster: etcd, Redis, haproxy and node1-node3 (see README for ports).
run: install
	mkdir -p data
	$(VENV)/bin/honcho start

# Everything but one node, e.g. `make run-without N=2`; start that node in another
# terminal with `make run-node N=2` to kill and restart it on its own.
run-without: install
	mkdir -p data
	$(VENV)/bin/honcho start etcd redis lb $(filter-out node$(N),node1 node2 node3)

run-node: install
	$(VENV)/bin/honcho start node$(N)

lint: install
	$(PY) -m ruff check --no-cache .

test: install lint
	$(PY) -m pytest -q -p no:cacheprovider tests

test-unit: install
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

test-cluster: install
	$(PY) -m pytest -q -p no:cacheprovider tests/cluster

# The replication core under seeded fault schedules (tests/sim), e.g. `make simulate SEEDS=50000`;
# replay one seed with `.venv/bin/python -m tests.sim --seed S --trace`.
SEEDS ?= 10000
simulate: install
	$(PY) -m tests.sim --seeds $(SEEDS)

# 10 minutes of kill -9 and restart of a random node under load, then the replica checker.
chaos: install
	$(PY) ops/faults/chaos.py --duration $${CHAOS_SECONDS:-600}

# Memory per idle connection (10,000 TCP and 10,000 WebSocket connections on one node).
bench-idle: install
	$(PY) ops/bench/idle_connections.py --conns 10000

# Load-generator scenarios against a local 3-node cluster and one node; rewrites docs/BENCHMARKS.md.
bench: install
	$(PY) ops/bench/run.py

# Group fan-out (20 x 10 over WebSocket), servers pinned to CPU 0 and load to CPU 1: server CPU per
# delivery at 125 msg/s and the maximum rate at p99 <= 200 ms, Skein next to python-socketio + Redis
# (installed into .bench/ from PyPI); ARGS="--only skein,python-socketio,node-socketio,bare-ws" adds the others.
bench-compare: install
	$(PY) -m ops.bench.compare $(ARGS)

# py-spy flame graph and hot spots of node 1 under load: make profile LOAD="--scenario groups --group-rate 500"
profile: install
	$(PY) ops/bench/profile.py -- $${LOAD:---scenario pairs --rate 1000}

docs: install
	$(PY) -m mesh.base.config --markdown > docs/config.md
	$(PY) -m api.openapi > docs/openapi.json

clean:
	rm -rf data
