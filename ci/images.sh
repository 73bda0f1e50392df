#!/usr/bin/env bash
# Build the paper images from containers/Dockerfile.
#
#   ci/images.sh [--engine docker|podman] [--push] [--print] [paper ...]   (default: all five)
#
# With a Docker engine and buildx: `docker buildx bake` on containers/docker-bake.hcl (the
# package versions, transformers pins and arXiv ids are read from the packages and handed to bake
# as variables). Without one (the CI machines have the docker client only): podman builds the same
# Dockerfile on a local Debian bookworm base made with debootstrap (DESIGN.md, specs/environment.md).
#
# Environment:
#   BASE_IMAGE            final/builder base (docker default: the bake file's nvidia/cuda image;
#                         podman default: localhost/debian:bookworm, built here if missing)
#   REGISTRY              image name prefix (default: vlrepro, i.e. local names vlrepro/vlrepro-<paper>)
#   VLREPRO_PODMAN_DIR    where podman's containers.conf and the base tarball live (/var/tmp/vlrepro-podman)
#   VLREPRO_BASE_TAR      cached `podman save` of the base (default: $VLREPRO_PODMAN_DIR/debian-bookworm.tar)
#   VLREPRO_UV_CACHE      host uv cache handed to podman builds (default: `uv cache dir` when it exists;
#                         set to "" to download everything inside the build)
#   VLREPRO_HOST_CA       CA bundle passed as the `hostca` build secret (default: the system bundle)
#   VLREPRO_DEBIAN_MIRROR mirror for debootstrap (default: apt's mirror on Debian hosts, else deb.debian.org)
#
# This file is also sourced by ci/image_test.sh and ci/smoke.sh for its functions.

VL_ALL_PAPERS=(live leverlm lcl sophon ademvl)
VL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VL_PODMAN_DIR=${VLREPRO_PODMAN_DIR:-/var/tmp/vlrepro-podman}
VL_PODMAN_BASE=localhost/debian:bookworm
VL_REGISTRY=${REGISTRY:-vlrepro}

vl_log() { echo "== $*" >&2; }

# vl_meta <paper> -> "version transformers arxiv" read from the package itself
vl_meta() {
  python3 - "$VL_ROOT" "$1" <<'PY'
import re, sys, tomllib
from pathlib import Path
root, paper = Path(sys.argv[1]), sys.argv[2]
proj = tomllib.loads((root / "packages" / paper / "pyproject.toml").read_text())["project"]
tf = next(d.split("==")[1].strip() for d in proj["dependencies"] if re.match(r"transformers\s*==", d))
init = (root / "packages" / paper / "src" / "vlrepro" / paper / "__init__.py").read_text()
m = re.search(r"arXiv[ :]*(\d{4}\.\d{4,5})", init)
print(proj["version"], tf, m.group(1) if m else "unknown")
PY
}

vl_revision() { git -C "$VL_ROOT" rev-parse HEAD 2>/dev/null || echo unknown; }

vl_source() {
  local url
  url=$(git -C "$VL_ROOT" config --get remote.origin.url 2>/dev/null || true)
  url=${url%.git}
  case "$url" in
    git@github.com:*) url="https://github.com/${url#git@github.com:}" ;;
  esac
  echo "${url:-https://github.com/vlrepro/vlrepro}"
}

vl_image_name() { # <paper> <version>
  echo "$VL_REGISTRY/vlrepro-$1:$2"
}

vl_check_papers() {
  local p
  for p in "$@"; do
    [ -d "$VL_ROOT/packages/$p" ] || { echo "unknown paper '$p' (known: ${VL_ALL_PAPERS[*]})" >&2; return 2; }
  done
}

# ---- podman (no Docker engine) -------------------------------------------------------------
vl_podman_setup() {
  if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
    vl_log "installing podman, runc, debootstrap (apt)"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends podman runc debootstrap >/dev/null
  fi
  mkdir -p "$VL_PODMAN_DIR"
  # crun rejects hybrid cgroups and podman's default rlimits are refused on the CI machines:
  # runc, cgroupfs and explicit limits no higher than this shell's hard limits.
  local nofile nproc
  nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] && nofile=1048576
  [ "$nofile" -gt 1048576 ] && nofile=1048576
  nproc=$(ulimit -Hu); { [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768
  cat > "$VL_PODMAN_DIR/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  export CONTAINERS_CONF="$VL_PODMAN_DIR/containers.conf"
}

# The base image: no registry is reachable, so debootstrap bookworm from the mirror apt uses.
vl_podman_base() {
  local tar=${VLREPRO_BASE_TAR:-$VL_PODMAN_DIR/debian-bookworm.tar}
  if podman image exists "$VL_PODMAN_BASE"; then
    vl_log "base $VL_PODMAN_BASE: present"
  elif [ -s "$tar" ]; then
    vl_log "base $VL_PODMAN_BASE: podman load < $tar"
    podman load -q -i "$tar" >/dev/null
  else
    local mirror rootfs
    # apt's own mirror on a Debian host (the only one a locked-down CI machine reaches), else Debian's
    mirror=${VLREPRO_DEBIAN_MIRROR:-}
    if [ -z "$mirror" ] && grep -qx 'ID=debian' /etc/os-release 2>/dev/null; then
      mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
      [ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    fi
    mirror=${mirror:-http://deb.debian.org/debian}
    rootfs=$(mktemp -d /var/tmp/vlrepro-rootfs.XXXXXX)
    vl_log "base $VL_PODMAN_BASE: debootstrap --variant=minbase bookworm from $mirror"
    if ! debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$VL_PODMAN_DIR/debootstrap.log" 2>&1; then
      tail -20 "$VL_PODMAN_DIR/debootstrap.log" >&2; rm -rf "$rootfs"; return 1
    fi
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | podman import -q - "$VL_PODMAN_BASE" >/dev/null
    rm -rf "$rootfs"
    podman save -q -o "$tar" "$VL_PODMAN_BASE"
    vl_log "base saved to $tar"
  fi
}

# vl_podman_build <paper>: builds $REGISTRY/vlrepro-<paper>:<version>; prints the image name
vl_podman_build() {
  local paper=$1 version tf arxiv base image ca uvcache
  read -r version tf arxiv < <(vl_meta "$paper")
  base=${BASE_IMAGE:-$VL_PODMAN_BASE}
  image=$(vl_image_name "$paper" "$version")
  local args=(
    build --format docker --network=host -f "$VL_ROOT/containers/Dockerfile" -t "$image"
    --build-arg "BASE_IMAGE=$base" --build-arg "PACKAGE=$paper" --build-arg "VERSION=$version"
    --build-arg "TRANSFORMERS_VERSION=$tf" --build-arg "ARXIV_ID=$arxiv"
    --build-arg "REVISION=$(vl_revision)" --build-arg "SOURCE=$(vl_source)"
    --build-arg "CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  )
  ca=${VLREPRO_HOST_CA:-/etc/ssl/certs/ca-certificates.crt}
  [ -s "$ca" ] && args+=(--secret "id=hostca,src=$ca")
  # Reuse the host's uv cache (kept warm between CI runs) instead of downloading ~3 GB of torch
  # and nvidia wheels again; the Dockerfile's own cache mount serves docker/bake builds.
  if [ -z "${VLREPRO_UV_CACHE+x}" ] && command -v uv >/dev/null 2>&1; then
    uvcache=$(uv cache dir 2>/dev/null || true)
  else
    uvcache=${VLREPRO_UV_CACHE:-}
  fi
  if [ -n "$uvcache" ] && [ -d "$uvcache" ]; then
    args+=(--volume "$uvcache:/host-uv-cache" --build-arg "UV_CACHE_DIR=/host-uv-cache")
  fi
  vl_log "podman build $image (PACKAGE=$paper, BASE_IMAGE=$base${uvcache:+, uv cache $uvcache})"
  podman "${args[@]}" "$VL_ROOT" >&2 || return 1
  echo "$image"
}

# ---- docker buildx bake --------------------------------------------------------------------
vl_bake_env() { # exports <PAPER>_VERSION for bake from the packages
  local p version tf arxiv
  for p in "${VL_ALL_PAPERS[@]}"; do
    read -r version tf arxiv < <(vl_meta "$p")
    export "${p^^}_VERSION=$version"
  done
  REVISION=$(vl_revision); SOURCE=$(vl_source); CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  export REVISION SOURCE CREATED REGISTRY="$VL_REGISTRY"
}

vl_images_main() {
  set -euo pipefail
  local engine="" push=0 print=0 papers=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --engine) engine=$2; shift 2 ;;
      --engine=*) engine=${1#*=}; shift ;;
      --push) push=1; shift ;;
      --print) print=1; shift ;;
      -h|--help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; return 0 ;;
      -*) echo "ci/images.sh: unknown option $1" >&2; return 2 ;;
      *) papers+=("$1"); shift ;;
    esac
  done
  [ ${#papers[@]} -gt 0 ] || papers=("${VL_ALL_PAPERS[@]}")
  vl_check_papers "${papers[@]}"
  if [ -z "$engine" ]; then
    if docker buildx version >/dev/null 2>&1 && docker info >/dev/null 2>&1; then engine=docker; else engine=podman; fi
  fi
  if [ "$engine" = docker ]; then
    vl_bake_env
    local bake=(docker buildx bake -f "$VL_ROOT/containers/docker-bake.hcl")
    [ -n "${BASE_IMAGE:-}" ] && bake+=(--set "*.args.BASE_IMAGE=$BASE_IMAGE")
    [ "$print" -eq 1 ] && bake+=(--print)
    if [ "$push" -eq 1 ]; then bake+=(--push); elif [ "$print" -eq 0 ]; then bake+=(--load); fi
    (cd "$VL_ROOT" && "${bake[@]}" "${papers[@]}")
  elif [ "$engine" = podman ]; then
    [ "$print" -eq 0 ] || { echo "ci/images.sh: --print needs docker buildx" >&2; return 2; }
    vl_podman_setup
    [ -n "${BASE_IMAGE:-}" ] || vl_podman_base
    local p image start
    for p in "${papers[@]}"; do
      start=$(date +%s)
      image=$(vl_podman_build "$p")
      vl_log "built $image in $(( $(date +%s) - start ))s"
      if [ "$push" -eq 1 ]; then podman push "$image"; fi
    done
  else
    echo "ci/images.sh: --engine must be docker or podman" >&2; return 2
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  vl_images_main "$@"
fi
