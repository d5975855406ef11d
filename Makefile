# One entry point for developers and CI. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := $(CURDIR)/.venv
SCHED_VENV := $(CURDIR)/scheduler/.venv
COLLECTIONS := $(CURDIR)/build/collections
LINK := $(COLLECTIONS)/ansible_collections/gpunas/platform
PYTHON ?= python3

export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export CONTAINERS_CONF := $(CURDIR)/tools/testhosts/containers.conf
export MOLECULE_GLOB := molecule/*/molecule.yml
export ANSIBLE_FORCE_COLOR := false
export PY_COLORS := 0

.PHONY: help deps venv scheduler-venv link lint sanity units scheduler-test test-fast testhosts molecule test lab lab-down build

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

deps: ## Debian packages the tests and the lab need (installs what is missing when run as root)
	tools/install-deps

venv: $(VENV)/.stamp ## Controller, lint and scenario tools (pinned)
$(VENV)/.stamp: requirements/controller.txt requirements/test.txt requirements/constraints.txt
	tools/install-deps
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements/test.txt -c requirements/constraints.txt
	touch $@

scheduler-venv: $(SCHED_VENV)/.stamp ## The scheduler daemon and its test tools
$(SCHED_VENV)/.stamp: scheduler/pyproject.toml scheduler/constraints.txt
	$(PYTHON) -m venv $(SCHED_VENV)
	$(SCHED_VENV)/bin/pip install -q -c scheduler/constraints.txt -e 'scheduler[test]'
	touch $@

link: ## Make the collection importable as ansible_collections.gpunas.platform
	@mkdir -p $(dir $(LINK))
	@ln -sfn ../../../.. $(LINK)

lint: venv ## yamllint, ansible-lint (production profile and our rules), ruff, changelog fragments
	yamllint --strict .
	python -m pytest -q -p no:cacheprovider tools/tests
	ansible-lint --strict
	ruff check .
	antsibull-changelog lint

build: venv ## Build the collection artifact into build/
	@mkdir -p build
	ansible-galaxy collection build --force --output-path build .

# ansible-test pins its own linters; they live in a venv of their own so that they never fight
# ansible-lint's. (--venv would fetch get-pip from the internet, which CI cannot reach.)
SANITY_VENV := $(CURDIR)/build/sanity-venv
$(SANITY_VENV)/.stamp: requirements/controller.txt requirements/constraints.txt tools/ansible-test-get-pip.py
	$(PYTHON) -m venv $(SANITY_VENV)
	$(SANITY_VENV)/bin/pip install -q -r requirements/controller.txt -c requirements/constraints.txt
	pip_version=$$($(SANITY_VENV)/bin/python -c 'from ansible_test._internal.python_requirements import get_venv_packages as g; from ansible_test._internal.host_configs import NativePythonConfig as N; print(g(N(version="3.11"))["pip"])') && \
		install -D -m 0644 tools/ansible-test-get-pip.py ~/.ansible/test/cache/get_pip_$${pip_version//./_}.py
	touch $@

sanity: venv build $(SANITY_VENV)/.stamp ## ansible-test sanity on exactly what the artifact ships
	rm -rf build/sanity
	ansible-galaxy collection install --force --no-deps -p build/sanity build/gpunas-platform-*.tar.gz
	cd build/sanity/ansible_collections/gpunas/platform && git init -q && git add -A && \
		PATH=$(SANITY_VENV)/bin:$$PATH ansible-test sanity --local --requirements --python 3.11 --color no

units: venv link ## Unit tests of modules, module_utils and filters
	cd $(LINK) && PYTHONPATH=$(COLLECTIONS) $(VENV)/bin/python -m pytest -p no:cacheprovider tests/unit

scheduler-test: scheduler-venv ## The daemon's tests and mypy --strict on domain and service
	cd scheduler && $(SCHED_VENV)/bin/mypy
	cd scheduler && $(SCHED_VENV)/bin/python -m pytest -p no:cacheprovider

test-fast: lint sanity units scheduler-test ## Everything that needs no test host

testhosts: ## Build (or reuse from cache) the container and VM test-host images
	$(PYTHON) tools/testhosts/testhosts.py build

molecule: venv link testhosts ## Molecule scenarios: all, or SCENARIO=name
	tools/run-scenarios $(SCENARIO)

test: deps ## The whole suite, as CI runs it (images build while the fast checks run)
	$(MAKE) --no-print-directory -j2 --output-sync=target test-fast testhosts
	$(MAKE) --no-print-directory molecule

lab: deps venv link testhosts ## Converge the embedded local lab (keeps it running; make lab-down stops it)
	molecule converge -s lab
	@echo "The lab is up: 'molecule login -s lab -h <host>' to look around, 'make lab-down' to stop it."

lab-down: venv ## Stop the embedded lab
	molecule destroy -s lab
