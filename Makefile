# The two commands a new machine needs:
#   make rehearse PHASE=1   set everything up, then rehearse a phase end to end
#   make test               set everything up, then run the whole test suite
VENV ?= .venv
PHASE ?= 1
PYTEST ?= $(VENV)/bin/pytest
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup rehearse test test-fast lint bench clean

setup:
	./scripts/bootstrap.sh

rehearse: setup
	$(VENV)/bin/tooling rehearse --phase $(PHASE)

test: setup
	./scripts/run-tests.sh

test-fast: setup
	$(PYTEST) -m "not slow and not sandbox" -q

# Static checks, run by CI beside `make test`: Python (ruff, mypy) and the Ansible tree (ansible-lint's
# production profile, yamllint).
lint: setup
	$(VENV)/bin/ruff check ddp tooling tests bench
	$(VENV)/bin/ruff format --check ddp tooling tests bench
	$(VENV)/bin/mypy
	ANSIBLE_CONFIG=$(CURDIR)/ansible.cfg $(VENV)/bin/ansible-lint --offline --nocolor --profile production
	$(VENV)/bin/yamllint --format parsable .

bench: setup
	$(VENV)/bin/python bench/trainer_overhead.py
	$(VENV)/bin/python bench/recovery.py
	$(VENV)/bin/python bench/cli_start.py
