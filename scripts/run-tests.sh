#!/usr/bin/env bash
# The whole suite in one pytest run on two workers (--dist loadgroup): the tests of the shared sandbox
# cluster (tests/integration/cluster, one xdist group) run in order on one worker while the other takes the
# unit, multi-process trainer and molecule tests at a lower CPU priority (tests/conftest.py). Each stage's
# time and the 25 slowest tests are printed, then each worker's minutes (runs/tests/junit.xml).
# pytest's exit 5 (nothing collected) is a failure here: a suite that runs nothing proves nothing.
#   scripts/run-tests.sh                 the whole suite (what `make test` and CI run)
#   scripts/run-tests.sh PYTEST-ARGS...  one pytest run with those arguments instead
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"

status=0
stage() {
  local name=$1 started=$SECONDS rc
  shift
  "$@"
  rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "run-tests: pytest collected no tests for: $*" >&2
    rc=1
  fi
  echo "run-tests: stage ${name}: $((SECONDS - started)) s, exit ${rc}"
  [ "$rc" -eq 0 ] || status=$rc
}

if [ "$#" -gt 0 ]; then
  stage pytest "$VENV/bin/pytest" "$@"
  exit "$status"
fi
stage ruff "$VENV/bin/ruff" check ddp tooling tests bench
# The sandbox node image every cluster and molecule test starts from: built once here (about a minute on a
# fresh machine, nothing when it is there) rather than raced for by both workers.
if command -v podman >/dev/null; then
  stage image "$VENV/bin/python" -m tooling.sandbox image
fi
# The JUnit report keeps every test's time, worker and printed output (the cluster tests print the time of
# each command and wait they ran): scripts/test_durations.py reads where the minutes went.
REPORT=${TEST_REPORT:-runs/tests/junit.xml}
mkdir -p "$(dirname "$REPORT")"
stage pytest "$VENV/bin/pytest" -n "${TEST_WORKERS:-2}" --dist loadgroup --durations=25 \
  --junitxml="$REPORT" -o junit_logging=system-out
[ -s "$REPORT" ] && "$VENV/bin/python" scripts/test_durations.py "$REPORT" --top 15
exit "$status"
