#!/usr/bin/env bash
# The image proof: build one paper's image from containers/Dockerfile with podman on this machine
# (no Docker engine needed) and run its `smoke` inside, checking the results.json it writes.
#
#   ci/image_test.sh <paper> [--rm-image] [--cmd "verb args"]
#
# Steps: podman, runc and debootstrap from apt if missing; the base localhost/debian:bookworm from
# the cached `podman save` tarball, else debootstrap (then cached); podman build (the host CA as the
# `hostca` build secret, the host uv cache as a build volume: see ci/images.sh); then
#   podman run --rm --network=none -v <tmpdir>:/outputs IMAGE smoke --out /outputs
# as the image's non-root user, and a check of /outputs/results.json. Prints one PASS/FAIL line.
# The image and podman's layer cache stay for the next run (a source edit rebuilds the last layers
# only); --rm-image removes the image and prunes dangling layers. Heavy on 2 cores: run it under
# `nice`. VLREPRO_PODMAN_DIR and VLREPRO_BASE_TAR move the podman cache.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
# shellcheck source=ci/images.sh
source ci/images.sh

paper="" rm_image=0 cmd="smoke"
while [ $# -gt 0 ]; do
  case "$1" in
    --rm-image) rm_image=1; shift ;;
    --cmd) cmd=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "ci/image_test.sh: unknown option $1" >&2; exit 2 ;;
    *) [ -z "$paper" ] || { echo "ci/image_test.sh: one paper at a time" >&2; exit 2; }; paper=$1; shift ;;
  esac
done
[ -n "$paper" ] || { echo "usage: ci/image_test.sh <paper> (one of: ${VL_ALL_PAPERS[*]})" >&2; exit 2; }
vl_check_papers "$paper" || exit 2

start=$(date +%s)
fail() {
  echo "FAIL image_test vlrepro-$paper: $* ($(( $(date +%s) - start ))s)"
  exit 1
}
phase() { echo "== [$(( $(date +%s) - start ))s] $*"; }

phase "podman setup"
vl_podman_setup || fail "could not set up podman"
phase "base image"
vl_podman_base || fail "could not make the debootstrap base image"
phase "build"
build_start=$(date +%s)
image=$(vl_podman_build "$paper") || fail "podman build failed"
build_s=$(( $(date +%s) - build_start ))
phase "built $image in ${build_s}s"
read -r version tf _arxiv < <(vl_meta "$paper")

# static facts of the image
labels=$(podman image inspect --format '{{ index .Config.Labels "org.opencontainers.image.version" }} {{ index .Config.Labels "io.github.vlrepro.transformers" }} {{ .Config.User }}' "$image") \
  || fail "podman image inspect failed"
[ "$labels" = "$version $tf 1000:1000" ] || fail "labels/user are '$labels', expected '$version $tf 1000:1000'"

got=$(podman run --rm --network=none "$image" --version 2>&1) || fail "--version failed: $got"
[ "$got" = "vlrepro-$paper $version (transformers $tf, torch 2.10.0)" ] || fail "--version printed '$got'"
# captured first: `| grep -q` would close the pipe early and podman fails on the broken pipe
got=$(podman run --rm --network=none "$image" 2>&1) || fail "the default command (--help) failed: $got"
grep -q "usage: vlrepro-$paper <verb>" <<<"$got" || fail "the default command (--help) printed no usage: $got"

# the volumes ship empty, and the image's user (and any other uid) can write to /weights/hf, /outputs
got=$(podman run --rm --network=none --entrypoint /bin/sh "$image" -c \
  'ls -A /data /weights/hf /outputs | grep -v "^/.*:$" | grep . ; touch /weights/hf/.w /outputs/.w && echo writable' 2>&1)
[ "$got" = writable ] || fail "volumes not empty or not writable for uid 1000: $got"
got=$(podman run --rm --network=none --user 4242:4242 --entrypoint /bin/sh "$image" -c 'touch /weights/hf/.w /outputs/.w && echo writable' 2>&1)
[ "$got" = writable ] || fail "/weights/hf, /outputs not writable for an arbitrary --user uid: $got"

out=$(mktemp -d /var/tmp/vlrepro-image-test.XXXXXX)
chmod 0777 "$out"  # the image's user (uid 1000) writes here
phase "run: $cmd --out /outputs (network none, /outputs = $out)"
run_start=$(date +%s)
# shellcheck disable=SC2086  # $cmd is a verb and its words
podman run --rm --network=none --ipc=host -e HF_HUB_OFFLINE=1 -e TRANSFORMERS_OFFLINE=1 \
  -v "$out:/outputs" "$image" $cmd --out /outputs 2>&1 | tail -40
rc=${PIPESTATUS[0]}
run_s=$(( $(date +%s) - run_start ))
[ "$rc" -eq 0 ] || fail "'$cmd' exited $rc in the container"

python3 - "$out/results.json" "$paper" "$version" "$tf" <<'PY' || fail "results.json is not valid"
import json, math, sys
path, paper, version, tf = sys.argv[1:]
data = json.load(open(path))
rows = data if isinstance(data, list) else [data]
assert rows, "no rows"
for r in rows:
    for k in ("package", "metric", "value", "transformers", "torch", "device"):
        assert k in r, f"missing {k}"
    assert r["package"] == f"vlrepro-{paper}", r["package"]
    v = r["value"]
    assert isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v), v
    assert r["transformers"] == tf, (r["transformers"], tf)
    assert r["torch"] == "2.10.0", r["torch"]
    assert r["device"] == "cpu", r["device"]
    if "package_version" in r:
        assert r["package_version"] == version, r["package_version"]
    print(f"   {r['package']} {r.get('dataset', '')} {r['metric']} = {v} (device {r['device']}, transformers {r['transformers']})")
PY

size=$(podman image inspect --format '{{ .Size }}' "$image" 2>/dev/null || echo 0)
if [ "$rm_image" -eq 1 ]; then
  podman rmi -f "$image" >/dev/null 2>&1 || true
  podman image prune -f >/dev/null 2>&1 || true
fi
rm -rf "$out"
echo "PASS image_test vlrepro-$paper: $image ($(( size / 1000000 )) MB) built in ${build_s}s, $cmd ran in ${run_s}s, results.json valid; total $(( $(date +%s) - start ))s"
