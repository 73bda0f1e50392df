#!/usr/bin/env bash
# Every paper's `smoke` (the main job on a tiny random model of the paper's architecture), then one
# table of their results. Exits non-zero if any row is red.
#
#   ci/smoke.sh [--docker] [--device cpu|cuda] [--out DIR] [paper ...]     (default: all five)
#
#   (local)   .venvs/<paper>/bin/vlrepro-<paper> smoke --out DIR/<paper>; a missing env is synced
#             first with `UV_PROJECT_ENVIRONMENT=.venvs/<paper> uv sync --frozen --package vlrepro-<paper>`
#   --docker  the images instead ($REGISTRY/vlrepro-<paper>:<version>, from ci/images.sh):
#             docker run --rm [--gpus all] --ipc=host -v DIR/<paper>:/outputs IMAGE smoke --out /outputs;
#             podman when no Docker engine answers (VLREPRO_ENGINE=docker|podman forces one)
#   --device  passed to smoke; with --docker and cuda the containers get --gpus all
#
# A row is red when smoke exits non-zero, writes no valid results.json (package, metric, finite
# value, transformers, torch, device), reports another device than asked, or, where a row carries
# both paper_value and tolerance, misses the paper by more than the tolerance. With
# $GITHUB_STEP_SUMMARY set the table is also appended there as Markdown.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
# shellcheck source=ci/images.sh
source ci/images.sh

mode=local device=cpu out=outputs/smoke papers=()
while [ $# -gt 0 ]; do
  case "$1" in
    --docker) mode=image; shift ;;
    --device) device=$2; shift 2 ;;
    --device=*) device=${1#*=}; shift ;;
    --out) out=$2; shift 2 ;;
    --out=*) out=${1#*=}; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "ci/smoke.sh: unknown option $1" >&2; exit 2 ;;
    *) papers+=("$1"); shift ;;
  esac
done
[ ${#papers[@]} -gt 0 ] || papers=("${VL_ALL_PAPERS[@]}")
vl_check_papers "${papers[@]}" || exit 2
case "$device" in cpu|cuda) ;; *) echo "ci/smoke.sh: --device must be cpu or cuda" >&2; exit 2 ;; esac
mkdir -p "$out"
out=$(cd "$out" && pwd)

engine=""
if [ "$mode" = image ]; then
  engine=${VLREPRO_ENGINE:-}
  if [ -z "$engine" ]; then
    if docker info >/dev/null 2>&1; then engine=docker; else engine=podman; fi
  fi
  [ "$engine" = podman ] && vl_podman_setup
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=disabled

rows_file=$(mktemp)
trap 'rm -f "$rows_file"' EXIT
for p in "${papers[@]}"; do
  dir="$out/$p"
  rm -rf "$dir"; mkdir -p "$dir"
  log="$out/$p.log"
  start=$(date +%s)
  if [ "$mode" = local ]; then
    env_dir=".venvs/$p"
    if [ ! -x "$env_dir/bin/vlrepro-$p" ]; then
      echo "== sync $env_dir" >&2
      UV_PROJECT_ENVIRONMENT="$env_dir" uv sync --frozen --quiet --package "vlrepro-$p" >"$log" 2>&1
    fi
    echo "== vlrepro-$p smoke --device $device --out $dir" >&2
    "$env_dir/bin/vlrepro-$p" smoke --device "$device" --out "$dir" >>"$log" 2>&1
    rc=$?
  else
    read -r version _tf _arxiv < <(vl_meta "$p")
    image=$(vl_image_name "$p" "$version")
    run=("$engine" run --rm --ipc=host -e HF_HUB_OFFLINE=1 -e TRANSFORMERS_OFFLINE=1 -v "$dir:/outputs")
    if [ "$engine" = docker ]; then
      run+=(--user "$(id -u):$(id -g)")   # results owned by the caller; the entrypoint finds a HOME
    else
      chmod 0777 "$dir"                    # podman as root: the image's own user (1000) writes
    fi
    [ "$device" = cuda ] && run+=(--gpus all)
    echo "== $engine run $image smoke --device $device" >&2
    "${run[@]}" "$image" smoke --device "$device" --out /outputs >"$log" 2>&1
    rc=$?
  fi
  secs=$(( $(date +%s) - start ))
  python3 - "$p" "$dir/results.json" "$rc" "$secs" "$device" "$log" >>"$rows_file" <<'PY'
import json, math, sys
paper, path, rc, secs, device, log = sys.argv[1:]
def row(metric="-", value="-", paper_value="-", status="FAIL", why=""):
    print(json.dumps([paper, metric, value, paper_value, secs, status, why]))
if rc != "0":
    tail = open(log, errors="replace").read().strip().splitlines()[-1:] or [""]
    row(why=f"exit {rc}: {tail[0][:120]} (log: {log})"); sys.exit()
try:
    data = json.load(open(path))
    rows = data if isinstance(data, list) else [data]
    assert rows, "results.json has no rows"
except Exception as e:  # noqa: BLE001
    row(why=f"results.json: {e}"); sys.exit()
for r in rows:
    missing = [k for k in ("package", "metric", "value", "transformers", "torch", "device") if k not in r]
    v = r.get("value")
    finite = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    pv = r.get("paper_value")
    status, why = "ok", ""
    if missing:
        status, why = "FAIL", f"missing {missing}"
    elif not finite:
        status, why = "FAIL", f"value {v!r} is not finite"
    elif r["package"] != f"vlrepro-{paper}":
        status, why = "FAIL", f"package {r['package']}"
    elif not str(r["device"]).startswith(device):
        status, why = "FAIL", f"ran on {r['device']}, asked {device}"
    elif pv is not None and r.get("tolerance") is not None and abs(v - pv) > float(r["tolerance"]):
        status, why = "FAIL", f"|{v} - {pv}| > {r['tolerance']}"
    # model (e.g. tiny-idefics+icv vs +zero_shot) tells apart the rows of one paper
    metric = " ".join(str(r[k]) for k in ("model", "dataset", "metric") if r.get(k))
    row(metric, f"{v:.4g}" if finite else repr(v), "-" if pv is None else f"{pv:.4g}", status, why)
PY
done

python3 - "$rows_file" "${GITHUB_STEP_SUMMARY:-}" <<'PY'
import json, os, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
head = ["paper", "metric", "value", "paper_value", "seconds", "status"]
cells = [head] + [[str(c) for c in r[:6]] for r in rows]
widths = [max(len(c[i]) for c in cells) for i in range(6)]
red, green, reset = ("\033[31m", "\033[32m", "\033[0m") if sys.stdout.isatty() else ("", "", "")
for i, c in enumerate(cells):
    line = " | ".join(x.ljust(w) for x, w in zip(c, widths))
    if i == 0:
        print(line); print("-+-".join("-" * w for w in widths)); continue
    print((green if c[5] == "ok" else red) + line + reset)
for r in rows:
    if r[6]:
        print(f"  {r[0]}: {r[6]}")
if sys.argv[2]:
    with open(sys.argv[2], "a") as f:
        f.write("| " + " | ".join(head) + " |\n|" + "---|" * 6 + "\n")
        for r in rows:
            f.write("| " + " | ".join(str(c) for c in r[:5]) + f" | {'✅' if r[5] == 'ok' else '❌ ' + r[6]} |\n")
bad = sum(r[5] != "ok" for r in rows)
print(f"ci/smoke.sh: {len(rows) - bad} ok, {bad} red")
sys.exit(1 if bad else 0)
PY
