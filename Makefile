# The two commands: `make demo` (main job on the local lab) and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
LAB_MASTERS ?= 3
# What runs the static pods in the lab: runner (the lab's process-mode kubelet, the
# default: fast) or kubelet (the real kubelet + containerd: mirror pods through the API).
NODE ?= runner

.PHONY: deps venv bins test lint typecheck unit demo lab-up lab-down lab-status bench render clean

$(BIN)/bootstrap: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=25.1"
	$(BIN)/pip install -q -e . --group dev
	touch $@

venv: $(BIN)/bootstrap

# Debian packages the lab and the tests need (root; a no-op when all are installed).
deps:
	./lab/install-deps.sh

# kube-apiserver, controller-manager, scheduler, kubectl, etcd, etcdctl, etcdutl built from
# their Go modules (lab/kubebin/), cached in ~/.cache/bootstrap-lab: minutes cold, seconds warm.
# etcd 3.7 too (a minute cold): tests/test_etcd_minors.py runs each minor's real etcd.
# --node kubelet: also the kubelet, containerd (+ shim, ctr), crictl, runc and the lab's
# pause program for `lab up --node kubelet` (tests/test_kubelet_lab.py).
bins: venv
	$(BIN)/python -m lab bins --node kubelet
	$(BIN)/python -m lab bins --kubernetes v1.36.3 --etcd v3.6.16 --also-kubernetes v1.37.2 --also-etcd v3.7.0
	$(BIN)/python -m lab bins --etcd v3.7.4 >/dev/null

lint: venv
	$(BIN)/ruff check bootstrap lab tests bench
	$(BIN)/lint-imports

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -q

# The test command (README): packages, venv and binaries, then lint, types and every test
# (lab tests need root).
test: deps bins lint typecheck unit

# Offline: render the example inventory's three master trees.
render: venv
	$(BIN)/bootstrap render --inventory inventory.example.yaml --out build/render

# The main job on the local lab: lab up, bootstrap init, verify table; the lab stays up.
demo: deps venv bins
	NODE=$(NODE) ./lab/demo.sh $(LAB_MASTERS)

lab-up: venv
	$(BIN)/python -m lab up --masters $(LAB_MASTERS) --node $(NODE)

lab-down: venv
	$(BIN)/python -m lab down

lab-status: venv
	$(BIN)/python -m lab status

bench: venv
	$(BIN)/python -m bench

clean:
	rm -rf build .bootstrap
