#!/usr/bin/env bash
# The whole suite: lint, fast unit tests, multi-process trainer tests, then the sandbox cluster tests.
# pytest's exit 5 (nothing collected) is a failure here: a suite that runs nothing proves nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"

status=0
"$VENV/bin/ruff" check ddp tooling tests bench || status=1
"$VENV/bin/pytest" "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "run-tests: pytest collected no tests" >&2
  rc=1
fi
[ "$rc" -eq 0 ] || status=$rc
exit "$status"
