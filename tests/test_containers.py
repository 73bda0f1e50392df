"""Containers, bake file, CI scripts and workflows (issue 8).

Fast static checks that read the files and compare them with the packages. The heavy proofs are
opt-in: ``VLREPRO_IMAGE_TEST=1`` builds the ``live`` image with podman and runs ``smoke`` inside
(ci/image_test.sh, 10-30 min cold); ``VLREPRO_WHEEL_TEST=1`` pip-installs two wheels into a fresh
venv and runs ``smoke`` (ci/wheel_test.sh).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PAPERS = ["live", "leverlm", "lcl", "sophon", "ademvl"]
DOCKERFILE = ROOT / "containers" / "Dockerfile"
BAKE = ROOT / "containers" / "docker-bake.hcl"
WORKFLOWS = ROOT / ".github" / "workflows"


# ---- helpers ----------------------------------------------------------------------------------
def _package_meta(paper: str) -> tuple[str, str, str]:
    """(version, transformers pin, arXiv id) read from the package, as ci/images.sh's vl_meta does."""
    proj = tomllib.loads((ROOT / "packages" / paper / "pyproject.toml").read_text())["project"]
    tf = next(d.split("==")[1].strip() for d in proj["dependencies"] if re.match(r"transformers\s*==", d))
    init = (ROOT / "packages" / paper / "src" / "vlrepro" / paper / "__init__.py").read_text()
    m = re.search(r"arXiv[ :]*(\d{4}\.\d{4,5})", init)
    assert m, f"packages/{paper}: no arXiv id in __init__.py"
    return proj["version"], tf, m.group(1)


def _hcl_blocks(text: str, kind: str) -> dict[str, str]:
    """Bodies of the top-level ``kind "name" { ... }`` blocks of an HCL file (brace-matched)."""
    out = {}
    for m in re.finditer(rf'^{kind}\s+"([^"]+)"\s*\{{', text, re.M):
        depth, i = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        out[m.group(1)] = text[m.end():i - 1]
    return out


def _hcl_list(body: str, key: str) -> list[str]:
    m = re.search(rf"^\s*{key}\s*=\s*\[([^\]]*)\]", body, re.M)
    assert m, f"no {key} = [...]"
    return re.findall(r'"([^"]*)"', m.group(1))


def _hcl_args(body: str) -> dict[str, str]:
    m = re.search(r"args\s*=\s*\{([^}]*)\}", body)
    assert m, "no args = {...}"
    return dict(re.findall(r"^\s*(\w+)\s*=\s*(\S.*?)\s*$", m.group(1), re.M))


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, buf = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        s = raw.strip()
        if not buf and (not s or s.startswith("#")):
            continue
        if buf and s.startswith("#"):
            continue
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        buf += s
        if buf:
            word, _, rest = buf.partition(" ")
            lines.append((word.upper(), rest.strip()))
        buf = ""
    return lines


def _stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current = None
    for ins, args in _dockerfile_instructions():
        if ins == "FROM":
            current = args.split()[-1] if " AS " in args.upper() else args
            stages[current] = []
        elif current is not None:
            stages[current].append((ins, args))
    return stages


def _dockerignore_excludes(path: str) -> bool:
    """Docker's .dockerignore semantics: the last matching pattern wins, ``!`` re-includes, a
    pattern matching a parent folder matches everything below it, ``**`` spans folders."""
    excluded = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pat = raw.strip()
        if not pat or pat.startswith("#"):
            continue
        neg = pat.startswith("!")
        pat = pat[1:] if neg else pat
        pat = pat.strip("/")
        rx = ""
        i = 0
        while i < len(pat):
            if pat.startswith("**/", i):
                rx += "(?:.*/)?"
                i += 3
            elif pat.startswith("**", i):
                rx += ".*"
                i += 2
            elif pat[i] == "*":
                rx += "[^/]*"
                i += 1
            elif pat[i] == "?":
                rx += "[^/]"
                i += 1
            else:
                rx += re.escape(pat[i])
                i += 1
        if re.fullmatch(rf"{rx}(?:/.*)?", path):
            excluded = not neg
    return excluded


def _workflow(name: str) -> dict:
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict) and data.get("jobs"), f"{name} has no jobs"
    return data


def _run_lines(workflow: dict) -> list[str]:
    return [step.get("run", "") for job in workflow["jobs"].values() for step in job.get("steps", [])]


# ---- docker-bake.hcl --------------------------------------------------------------------------
def test_bake_has_the_five_paper_targets_and_an_all_group():
    text = BAKE.read_text()
    targets = _hcl_blocks(text, "target")
    assert sorted(t for t in targets if not t.startswith("_")) == sorted(PAPERS)
    groups = _hcl_blocks(text, "group")
    assert _hcl_list(groups["all"], "targets") == PAPERS
    assert _hcl_list(groups["default"], "targets") == ["all"]
    common = targets["_common"]
    assert re.search(r'dockerfile\s*=\s*"containers/Dockerfile"', common)
    assert re.search(r'context\s*=\s*"\."', common)


@pytest.mark.parametrize("paper", PAPERS)
def test_bake_target_matches_the_package(paper):
    """PACKAGE, transformers pin, arXiv id and the version default equal what the package says."""
    text = BAKE.read_text()
    version, tf, arxiv = _package_meta(paper)
    body = _hcl_blocks(text, "target")[paper]
    assert _hcl_list(body, "inherits") == ["_common"]
    args = _hcl_args(body)
    assert args["PACKAGE"] == f'"{paper}"'
    assert args["TRANSFORMERS_VERSION"] == f'"{tf}"'
    assert args["ARXIV_ID"] == f'"{arxiv}"'
    assert args["VERSION"] == f"{paper.upper()}_VERSION"
    var = _hcl_blocks(text, "variable")[f"{paper.upper()}_VERSION"]
    assert re.search(rf'default\s*=\s*"{re.escape(version)}"', var), f"{paper.upper()}_VERSION default != {version}"
    assert re.search(rf'tags\s*=\s*tags\("{paper}",\s*{paper.upper()}_VERSION\)', body)


def test_vl_meta_reads_the_same_metadata_as_the_bake_defaults():
    """ci/images.sh hands bake the versions from vl_meta: it must agree with the package files."""
    out = subprocess.run(
        ["bash", "-c", 'source ci/images.sh; for p in "${VL_ALL_PAPERS[@]}"; do echo "$p $(vl_meta "$p")"; done'],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split("\n")
    got = {line.split()[0]: tuple(line.split()[1:]) for line in out if line.strip()}
    assert got == {p: _package_meta(p) for p in PAPERS}


# ---- Dockerfile -------------------------------------------------------------------------------
def test_dockerfile_stages_base_and_package_args():
    text = DOCKERFILE.read_text()
    m = re.search(r"^ARG BASE_IMAGE=(\S+)", text, re.M)
    assert m and m.group(1).startswith("nvidia/cuda:12.8"), "default base: an nvidia/cuda 12.8 image (torch 2.10.0 is cu128)"
    assert not m.group(1).endswith(":latest")
    stages = _stages()
    assert list(stages) == ["deps", "builder", "runtime"]
    for stage in stages.values():  # build arguments end with their stage
        assert ("ARG", "PACKAGE") in stage
    froms = [a for i, a in _dockerfile_instructions() if i == "FROM"]
    assert froms == ["${BASE_IMAGE} AS deps", "deps AS builder", "${BASE_IMAGE} AS runtime"]


def test_dockerfile_syncs_dependencies_from_the_lock_before_the_sources():
    stages = _stages()
    deps, builder = stages["deps"], stages["builder"]
    copies = [a for i, a in deps if i == "COPY"]
    # every member's pyproject.toml in the dependency layer (astral-sh/uv#6867), no sources
    members = {"shared"} | {f"packages/{p}" for p in PAPERS}
    member_copies = {c.split()[0].rsplit("/", 1)[0] for c in copies if c.split()[0].endswith("/pyproject.toml")}
    assert member_copies == members
    assert copies[0] == "pyproject.toml uv.lock ./"
    assert all(c.split()[0].endswith(("pyproject.toml", "uv.lock")) for c in copies), copies
    (dep_sync,) = [a for i, a in deps if i == "RUN" and "uv sync" in a]
    assert "uv sync --frozen --no-dev --no-editable --no-install-workspace --package" in dep_sync
    assert "torch.cuda._is_compiled()" in dep_sync, "fail the build unless torch is a CUDA build"
    assert [a for i, a in builder if i == "COPY"] == ["shared/ shared/", "packages/${PACKAGE}/ packages/${PACKAGE}/"]
    (ws_sync,) = [a for i, a in builder if i == "RUN"]
    assert "uv sync --frozen --no-dev --no-editable --package" in ws_sync
    assert "--no-install-workspace" not in ws_sync
    # the delta layer: what the second sync added, and a refusal if it removed dependency files
    assert "-newer /opt/deps.stamp" in ws_sync and "comm -23 /opt/deps-files.txt" in ws_sync


def test_dockerfile_runtime_stage_has_venv_only_non_root_user_and_exec_entrypoint():
    runtime = _stages()["runtime"]
    copies = [a for i, a in runtime if i == "COPY"]
    assert copies == ["--from=deps /opt/venv /opt/venv", "--from=builder /delta/ /opt/venv/"], "the venv alone, two layers"
    users = [a for i, a in runtime if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "last USER must not be root (DL3002)"
    entry = [a for i, a in runtime if i == "ENTRYPOINT"]
    cmd = [a for i, a in runtime if i == "CMD"]
    assert [json.loads(e) for e in entry] == [["/usr/local/bin/vlrepro-entrypoint"]]
    assert [json.loads(c) for c in cmd] == [["--help"]]
    runs = " ".join(a for i, a in runtime if i == "RUN")
    assert '\'exec "vlrepro-${VLREPRO_PACKAGE}" "$@"\'' in runs, "the entrypoint execs the paper's console script"
    assert "default-jre-headless" in runs, "Java for the caption metrics (pycocoevalcap)"
    assert "useradd --uid 1000" in runs and users[-1] == "1000:1000"
    assert "chmod 1777 /weights /weights/hf /outputs" in runs, "any --user uid can write results and the HF cache"
    volumes = [json.loads(a) for i, a in runtime if i == "VOLUME"]
    assert volumes == [["/data", "/weights", "/outputs"]]
    env = " ".join(a for i, a in runtime if i == "ENV")
    for kv in ("HF_HOME=/weights/hf", "VLREPRO_DATA=/data", "MODEL_CPK_DIR=/weights", "RESULT_DIR=/outputs",
               "PATH=/opt/venv/bin:${PATH}", "VLREPRO_PACKAGE=${PACKAGE}"):
        assert kv in env.split(), kv


def test_dockerfile_labels():
    runtime = _stages()["runtime"]
    labels = " ".join(a for i, a in runtime if i == "LABEL")
    keys = dict(re.findall(r'([\w.-]+)="([^"]*)"', labels))
    assert keys["org.opencontainers.image.title"] == "vlrepro-${PACKAGE}"
    assert keys["org.opencontainers.image.version"] == "${VERSION}"
    assert keys["org.opencontainers.image.revision"] == "${REVISION}"
    assert keys["org.opencontainers.image.source"] == "${SOURCE}"
    assert keys["org.opencontainers.image.licenses"] == "MIT"
    assert keys["io.github.vlrepro.arxiv"] == "${ARXIV_ID}"
    assert keys["io.github.vlrepro.transformers"] == "${TRANSFORMERS_VERSION}"
    # the package's own license, so that the label does not lie
    for paper in PAPERS:
        lic = tomllib.loads((ROOT / "packages" / paper / "pyproject.toml").read_text())["project"].get("license")
        if lic is not None:
            assert (lic if isinstance(lic, str) else lic.get("text", "MIT")) == "MIT", paper


def test_every_hadolint_ignore_is_justified():
    lines = DOCKERFILE.read_text().splitlines()
    ignores = [i for i, s in enumerate(lines) if s.startswith("# hadolint ignore=")]
    assert ignores
    for i in ignores:
        rules = lines[i].split("=", 1)[1].split(",")
        assert lines[i - 1].startswith("#") and any(r in lines[i - 1] or r in lines[i - 2] for r in rules), (
            f"line {i + 1}: {lines[i]} has no comment above it that names the rule and says why")


# ---- .dockerignore ----------------------------------------------------------------------------
@pytest.mark.parametrize("path", [
    ".venvs/live/bin/python", ".venv/lib/x.py", ".git/HEAD", "data/coco/a.jpg", "outputs/smoke/results.json",
    "packages/live/data/vqav2/x.json", "packages/live/outputs/r.json", "packages/sophon/results/x",
    "packages/live/tests/test_x.py", "shared/tests/test_x.py", "packages/lcl/.venv/bin/python",
    "shared/src/vlrepro/shared/__pycache__/x.pyc", "packages/live/dist/x.whl", "ci/test.sh",
])
def test_dockerignore_excludes(path):
    assert _dockerignore_excludes(path)


@pytest.mark.parametrize("path", [
    "pyproject.toml", "uv.lock", "shared/pyproject.toml", "packages/ademvl/pyproject.toml",
    "packages/live/src/vlrepro/live/__init__.py", "shared/src/vlrepro/shared/data/__init__.py",
    "packages/lcl/src/vlrepro/lcl/configs/smoke.yaml", "packages/live/README.md",
])
def test_dockerignore_keeps_what_the_build_copies(path):
    assert not _dockerignore_excludes(path)


def test_dockerignore_matcher_is_not_vacuous():
    assert _dockerignore_excludes("anything/else") and not _dockerignore_excludes("uv.lock")


# ---- workflows --------------------------------------------------------------------------------
def test_ci_workflow_lints_and_runs_ci_test():
    wf = _workflow("ci.yml")
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads `on` as True
    assert "pull_request" in on and "push" in on
    runs = _run_lines(wf)
    assert "ci/lint.sh" in runs
    assert "ci/test.sh" in runs
    assert all(str(j["runs-on"]).startswith("ubuntu") for j in wf["jobs"].values()), "CPU runners"


def test_gpu_smoke_workflow_uses_a_self_hosted_gpu_runner_and_cuda_smoke():
    wf = _workflow("gpu-smoke.yml")
    (job,) = wf["jobs"].values()
    assert {"self-hosted", "gpu"} <= set(job["runs-on"])
    runs = "\n".join(_run_lines(wf))
    assert "ci/images.sh" in runs
    assert re.search(r"ci/smoke\.sh --docker --device cuda", runs)
    assert "--gpus all" in runs


def test_release_workflow_builds_six_wheels_and_pushes_versioned_images():
    wf = _workflow("release.yml")
    runs = "\n".join(_run_lines(wf))
    assert "uv build --all-packages" in runs
    assert '"$count" -ne 6' in runs
    assert "ci/images.sh --engine docker --push" in runs
    assert "ci/wheel_test.sh" in runs
    assert wf["jobs"]["images"]["permissions"]["packages"] == "write"


def test_actionlint_knows_the_gpu_label():
    yaml = pytest.importorskip("yaml")
    cfg = yaml.safe_load((ROOT / ".github" / "actionlint.yaml").read_text())
    assert "gpu" in cfg["self-hosted-runner"]["labels"]


# ---- ci scripts: argument handling ------------------------------------------------------------
@pytest.mark.parametrize("argv, needle", [
    (["ci/image_test.sh"], "usage: ci/image_test.sh <paper>"),
    (["ci/image_test.sh", "nosuch"], "unknown paper 'nosuch'"),
    (["ci/image_test.sh", "live", "lcl"], "one paper at a time"),
    (["ci/wheel_test.sh"], "usage: ci/wheel_test.sh <paper>"),
    (["ci/smoke.sh", "--device", "tpu"], "--device must be cpu or cuda"),
    (["ci/smoke.sh", "nosuch"], "unknown paper 'nosuch'"),
    (["ci/images.sh", "--engine", "lxc", "live"], "--engine must be docker or podman"),
])
def test_ci_scripts_refuse_bad_arguments_with_exit_2(argv, needle, tmp_path):
    env = {**os.environ, "VLREPRO_PODMAN_DIR": str(tmp_path)}
    r = subprocess.run(["bash", *argv], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert needle in r.stderr + r.stdout


def test_ci_scripts_parse():
    for name in ("images.sh", "image_test.sh", "smoke.sh", "wheel_test.sh", "lint.sh"):
        r = subprocess.run(["bash", "-n", f"ci/{name}"], cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, (name, r.stderr)


# ---- the heavy proofs (opt-in) ----------------------------------------------------------------
@pytest.mark.skipif(os.environ.get("VLREPRO_IMAGE_TEST") != "1",
                    reason="set VLREPRO_IMAGE_TEST=1: podman build of the live image + smoke inside (10-30 min)")
def test_live_image_builds_and_runs_smoke():
    r = subprocess.run(["bash", "ci/image_test.sh", "live"], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    assert r.returncode == 0 and last.startswith("PASS image_test vlrepro-live"), r.stdout[-4000:] + r.stderr[-4000:]


@pytest.mark.skipif(os.environ.get("VLREPRO_WHEEL_TEST") != "1",
                    reason="set VLREPRO_WHEEL_TEST=1: pip install of two wheels into a fresh venv + smoke")
def test_live_wheels_install_with_pip_and_run_smoke():
    if shutil.which("uv") is None:
        pytest.skip("uv builds the wheels")
    r = subprocess.run(["bash", "ci/wheel_test.sh", "live"], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    assert r.returncode == 0 and last.startswith("PASS wheel_test vlrepro-live"), r.stdout[-4000:] + r.stderr[-4000:]


# ---- containers/README.md ---------------------------------------------------------------------
@pytest.mark.parametrize("paper", PAPERS)
def test_readme_shows_smoke_train_eval_for_every_paper(paper):
    text = (ROOT / "containers" / "README.md").read_text()
    version = _package_meta(paper)[0]
    for verb in ("smoke", "train", "eval"):
        assert re.search(rf"vlrepro/vlrepro-{paper}:{re.escape(version)} +{verb} +--device cuda", text), (paper, verb)
    assert "docker run --rm --gpus all --ipc=host" in text


def test_readme_demo_examples_publish_the_port_and_bind_all_interfaces():
    text = (ROOT / "containers" / "README.md").read_text()
    demos = [line for line in text.splitlines() if re.search(r"vlrepro-\w+:\S+ demo ", line)]
    assert {re.search(r"vlrepro-(\w+):", d).group(1) for d in demos} == {"lcl", "sophon"}
    for line in demos:
        assert "-p 7860:7860" in line and "0.0.0.0" in line and "7860" in line.split(" demo ", 1)[1], line
