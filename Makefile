# make up       build the whole mesh (local Pulumi backend, no account needed)
# make preview  review the changes `make up` would make
# make verify   prove the running mesh works
# make destroy  remove everything the stack created
# make test     the whole offline test suite (lint included)
SHELL := /bin/bash
STACK ?= east-west
PULUMI ?= pulumi
VENV := venv
PY := $(VENV)/bin/python

# An empty passphrase only obfuscates state secrets: set PULUMI_CONFIG_PASSPHRASE or
# PULUMI_CONFIG_PASSPHRASE_FILE before the first `make up` to really encrypt them.
ifeq ($(origin PULUMI_CONFIG_PASSPHRASE)$(origin PULUMI_CONFIG_PASSPHRASE_FILE),undefinedundefined)
export PULUMI_CONFIG_PASSPHRASE :=
endif

.PHONY: up preview destroy verify test lint bench e2e stack

up: stack
	$(PY) tools/minikube_ops.py resume --stack-file Pulumi.$(STACK).yaml
	$(PULUMI) up --refresh --yes --stack $(STACK)

preview: stack
	$(PY) tools/minikube_ops.py resume --stack-file Pulumi.$(STACK).yaml --dry-run
	$(PULUMI) preview --refresh --diff --stack $(STACK)

# `pulumi install` every time: `pulumi up` creates the venv only when it is missing, never updates it.
stack:
	$(PULUMI) install
	$(PULUMI) stack select --create --secrets-provider passphrase $(STACK)

# Never --remove: it would delete the committed stack file.
destroy:
	$(PULUMI) destroy --yes --stack $(STACK)

# verify talks to the clusters with the kubernetes client (a dev requirement).
verify: $(VENV)/.dev-installed
	$(PY) tools/verify.py --stack $(STACK)

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

lint: $(VENV)/.dev-installed
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -q -rs

bench: $(VENV)/.dev-installed
	$(PY) tools/bench.py

e2e: $(VENV)/.dev-installed
	KMC_E2E=1 $(PY) -m pytest -q -rs tests/e2e
