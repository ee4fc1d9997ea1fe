#!/usr/bin/env bash
# The whole suite: lint, fast unit tests, multi-process trainer tests, then the sandbox cluster tests.
# pytest's exit 5 (nothing collected) is a failure here: a suite that runs nothing proves nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"

status=0
"$VENV/bin/ruff" check ddp tooling tests bench || status=1

run_pytest() {
  "$VENV/bin/pytest" "$@"
  local rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "run-tests: pytest collected no tests for: $*" >&2
    rc=1
  fi
  [ "$rc" -eq 0 ] || status=$rc
}

if [ "$#" -gt 0 ]; then
  run_pytest "$@"
  exit "$status"
fi
# Unit and multi-process trainer tests, then the sandbox tests two files at a time: the molecule
# scenarios and the provisioned cluster wait on apt and SSH more than on the CPU. One file, one worker:
# every test of the provisioned cluster lives in test_cluster_phase2a.py.
run_pytest -m "not sandbox"
run_pytest -m sandbox -n "${SANDBOX_WORKERS:-2}" --dist loadfile
exit "$status"
