#!/usr/bin/env bash
# The wheel proof: vlrepro-shared and one paper as wheels, installed with plain pip (no uv, no
# lock) into a fresh venv, then the paper's --version, --help and smoke.
#
#   ci/wheel_test.sh <paper> [--keep]
#
# pip resolves the dependencies from PyPI as a user's `pip install` would (torch==2.10.0 with its
# nvidia-* wheels, about 3 GB the first time; pip's cache keeps them for the next run). The venv
# (about 7 GB) lives under ${VLREPRO_WHEEL_TMP:-/var/tmp} and is removed unless --keep.
# Prints one PASS/FAIL line; exits non-zero on failure. Heavy on 2 cores: run it under `nice`.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
ALL_PAPERS=(live leverlm lcl sophon ademvl)
paper="" keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "ci/wheel_test.sh: unknown option $1" >&2; exit 2 ;;
    *) paper=$1; shift ;;
  esac
done
[ -n "$paper" ] && [ -d "packages/$paper" ] || { echo "usage: ci/wheel_test.sh <paper> (one of: ${ALL_PAPERS[*]})" >&2; exit 2; }

start=$(date +%s)
work=$(mktemp -d "${VLREPRO_WHEEL_TMP:-/var/tmp}/vlrepro-wheel-test.XXXXXX")
cleanup() { if [ "$keep" -eq 1 ]; then echo "kept $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT
fail() { echo "FAIL wheel_test vlrepro-$paper: $* ($(( $(date +%s) - start ))s)"; exit 1; }
phase() { echo "== [$(( $(date +%s) - start ))s] $*"; }

read -r version tf < <(python3 - "$ROOT" "$paper" <<'PY'
import re, sys, tomllib
from pathlib import Path
proj = tomllib.loads((Path(sys.argv[1]) / "packages" / sys.argv[2] / "pyproject.toml").read_text())["project"]
print(proj["version"], next(d.split("==")[1] for d in proj["dependencies"] if re.match(r"transformers\s*==", d)))
PY
)

phase "uv build --wheel: vlrepro-shared, vlrepro-$paper"
for pkg in vlrepro-shared "vlrepro-$paper"; do  # uv build takes one --package at a time
  uv build --package "$pkg" --wheel -o "$work/dist" --quiet || fail "uv build --package $pkg failed"
done
ls "$work"/dist/*.whl
[ "$(find "$work/dist" -name '*.whl' | wc -l)" -eq 2 ] || fail "expected two wheels"

phase "python3 -m venv (no uv) + pip install the two wheels"
python3 -m venv "$work/venv" || fail "python3 -m venv failed"
pip_start=$(date +%s)
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$work"/dist/*.whl \
  || fail "pip install failed"
pip_s=$(( $(date +%s) - pip_start ))
phase "pip install took ${pip_s}s"
"$work/venv/bin/python" -m pip check || fail "pip check found broken requirements"

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=disabled
cli="$work/venv/bin/vlrepro-$paper"
got=$("$cli" --version 2>&1) || fail "--version failed: $got"
[ "$got" = "vlrepro-$paper $version (transformers $tf, torch 2.10.0)" ] || fail "--version printed '$got'"
# captured first: `| grep -q` may close the pipe before the CLI has written everything
got=$("$cli" --help 2>&1) || fail "--help failed: $got"
grep -q "usage: vlrepro-$paper <verb>" <<<"$got" || fail "--help printed no usage: $got"
got=$("$work/venv/bin/vlrepro" --help 2>&1) || fail "vlrepro (shared) --help failed: $got"
grep -q "usage:" <<<"$got" || fail "vlrepro (shared) --help printed no usage: $got"

phase "vlrepro-$paper smoke"
smoke_start=$(date +%s)
(cd "$work" && "$cli" smoke --out "$work/out") 2>&1 | tail -20
rc=${PIPESTATUS[0]}
smoke_s=$(( $(date +%s) - smoke_start ))
[ "$rc" -eq 0 ] || fail "smoke exited $rc"
python3 - "$work/out/results.json" "$paper" "$tf" <<'PY' || fail "results.json is not valid"
import json, math, sys
path, paper, tf = sys.argv[1:]
data = json.load(open(path))
rows = data if isinstance(data, list) else [data]
assert rows
for r in rows:
    assert r["package"] == f"vlrepro-{paper}" and r["transformers"] == tf and r["torch"] == "2.10.0", r
    assert isinstance(r["value"], (int, float)) and math.isfinite(r["value"]) and "metric" in r and "device" in r, r
print(f"   {len(rows)} row(s): " + ", ".join(f"{r['metric']}={r['value']}" for r in rows[:4]))
PY
echo "PASS wheel_test vlrepro-$paper: 2 wheels, pip install ${pip_s}s, smoke ${smoke_s}s; total $(( $(date +%s) - start ))s"
