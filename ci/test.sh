#!/usr/bin/env bash
# The test command (README): ci/test.sh [paper ...]
#   For each paper: sync .venvs/<paper> from uv.lock (--frozen), run shared's tests and the paper's
#   tests in that env. Then the top-level tests/ (lock fresh, conflicts, per-paper transformers,
#   wheels). Prints one summary line per package; exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ALL_PAPERS=(live leverlm lcl sophon ademvl)
if [ $# -gt 0 ]; then PAPERS=("$@"); else PAPERS=("${ALL_PAPERS[@]}"); fi
for p in "${PAPERS[@]}"; do
  [ -d "packages/$p" ] || { echo "ci/test.sh: unknown paper '$p' (known: ${ALL_PAPERS[*]})" >&2; exit 2; }
done

UV_VERSION=0.13.9
if ! command -v uv >/dev/null 2>&1; then
  echo "== installing uv $UV_VERSION"
  python3 -m pip install --quiet --user "uv==$UV_VERSION" || python3 -m pip install --quiet "uv==$UV_VERSION" || exit 2
  export PATH="$HOME/.local/bin:$PATH"
fi
command -v java >/dev/null 2>&1 || echo "ci/test.sh: warning: no java on PATH; caption-metric tests will skip"

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONDONTWRITEBYTECODE=1 WANDB_MODE=disabled GRADIO_ANALYTICS_ENABLED=False
LOGDIR=${VLREPRO_TEST_LOGS:-$(mktemp -d)}
mkdir -p "$LOGDIR"
declare -a SUMMARY
status=0

summarise() { # name logfile rc
  local line
  line=$(grep -E '(passed|failed|errors?|skipped|no tests ran).* in [0-9.]+s' "$2" | tail -1 | sed -E 's/^=+ //; s/ =+$//')
  [ -n "$line" ] || line="no pytest summary (rc=$3)"
  SUMMARY+=("$(printf '%-18s %s  [rc=%s]' "$1" "$line" "$3")")
}

echo "== uv lock --check"
if ! uv lock --check; then echo "uv.lock is stale: run 'uv lock' and commit it" >&2; status=1; fi

for p in "${PAPERS[@]}"; do
  env_dir=".venvs/$p"
  echo "== vlrepro-$p: sync $env_dir"
  if ! UV_PROJECT_ENVIRONMENT="$env_dir" uv sync --frozen --quiet --package "vlrepro-$p"; then
    SUMMARY+=("$(printf '%-18s %s' "vlrepro-$p" "uv sync failed")"); status=1; continue
  fi
  targets=(shared/tests)
  [ -d "packages/$p/tests" ] && targets+=("packages/$p/tests")
  echo "== vlrepro-$p: pytest ${targets[*]}"
  log="$LOGDIR/$p.log"
  "$env_dir/bin/python" -m pytest "${targets[@]}" -q -p no:cacheprovider 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  # exit 5 = no tests collected: a failure, never hidden
  [ "$rc" -eq 0 ] || status=1
  summarise "vlrepro-$p" "$log" "$rc"
done

echo "== workspace: pytest tests/"
log="$LOGDIR/workspace.log"
"${ROOT}/.venvs/${PAPERS[0]}/bin/python" -m pytest tests -q -p no:cacheprovider 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || status=1
summarise "workspace" "$log" "$rc"

echo
echo "== summary"
printf '%s\n' "${SUMMARY[@]}"
exit $status
