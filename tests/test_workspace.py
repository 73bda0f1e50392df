"""Workspace integrity: members, pins, the conflict set, the lock, per-paper envs and wheels."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PAPERS = {  # DESIGN.md, "Dependency decisions"
    "live": "4.45.2",
    "leverlm": "4.33.3",
    "lcl": "4.31.0",
    "sophon": "4.37.2",
    "ademvl": "4.46.3",
}
TORCH = "2.10.0"


def _toml(path: Path) -> dict:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def _deps(pyproject: dict) -> dict[str, str]:
    out = {}
    for d in pyproject["project"]["dependencies"]:
        name = d.split(";")[0]
        for sep in ("==", ">=", "<=", "<", ">", "~=", "!="):
            if sep in name:
                name = name.split(sep)[0]
                break
        out[name.strip().split("[")[0].lower()] = d
    return out


def _uv() -> str:
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH (ci/test.sh installs it)")
    return uv


def test_root_is_virtual_with_one_five_way_conflict_set():
    root = _toml(ROOT / "pyproject.toml")
    assert "project" not in root, "the root must stay virtual"
    uv = root["tool"]["uv"]
    assert root["tool"]["uv"]["workspace"]["members"] == ["shared", "packages/*"]
    assert "package-conflicts" in uv["preview-features"]
    assert uv["required-version"].startswith(">=")
    (conflict_set,) = uv["conflicts"]
    assert sorted(item["package"] for item in conflict_set) == sorted(f"vlrepro-{p}" for p in PAPERS)
    assert "pytest" in " ".join(root["dependency-groups"]["dev"])


@pytest.mark.parametrize("paper, pin", sorted(PAPERS.items()))
def test_paper_member_pins(paper, pin):
    pp = _toml(ROOT / "packages" / paper / "pyproject.toml")
    proj = pp["project"]
    assert proj["name"] == f"vlrepro-{paper}" and proj["version"] == "0.1.0"
    deps = _deps(pp)
    assert deps["transformers"] == f"transformers=={pin}"
    assert deps["torch"] == f"torch=={TORCH}"
    assert "vlrepro-shared" in deps
    assert proj["scripts"][f"vlrepro-{paper}"] == f"vlrepro.{paper}.cli:main"
    pkg = ROOT / "packages" / paper
    for needed in ("README.md", "CHANGELOG.md", f"src/vlrepro/{paper}/cli.py", f"src/vlrepro/{paper}/configs/__init__.py"):
        assert (pkg / needed).exists(), needed
    assert not (pkg / "src" / "vlrepro" / "__init__.py").exists(), "vlrepro is a PEP 420 namespace"


def test_shared_pins_neither_torch_nor_transformers():
    deps = _deps(_toml(ROOT / "shared" / "pyproject.toml"))
    assert "transformers" not in deps
    assert deps.get("torch", "torch") == "torch"
    assert not (ROOT / "shared" / "src" / "vlrepro" / "__init__.py").exists()


def test_no_paper_imports_another_paper():
    for paper in PAPERS:
        for py in (ROOT / "packages" / paper / "src").rglob("*.py"):
            text = py.read_text(encoding="utf-8")
            for other in PAPERS:
                if other != paper:
                    assert f"vlrepro.{other}" not in text, f"{py} imports vlrepro.{other}"


def test_lock_resolves_each_paper_to_its_own_transformers():
    lock = _toml(ROOT / "uv.lock")
    versions = {p["version"] for p in lock["package"] if p["name"] == "transformers"}
    assert versions == set(PAPERS.values())
    torches = {p["version"] for p in lock["package"] if p["name"] == "torch"}
    assert torches == {TORCH}
    recorded = {item["package"] for item in lock["manifest"].get("conflicts", [[]])[0]} if "conflicts" in lock.get("manifest", {}) else None
    if recorded is not None:
        assert recorded == {f"vlrepro-{p}" for p in PAPERS}


def test_lock_is_fresh():
    r = subprocess.run([_uv(), "lock", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("paper, pin", sorted(PAPERS.items()))
def test_paper_env_has_its_pin_and_cli(paper, pin):
    env = ROOT / ".venvs" / paper
    if not (env / "bin" / "python").exists():
        pytest.skip(f".venvs/{paper} not synced (ci/test.sh syncs the papers it tests)")
    r = subprocess.run([str(env / "bin" / f"vlrepro-{paper}"), "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"vlrepro-{paper} 0.1.0 (transformers {pin}, torch {TORCH})"
    r = subprocess.run([str(env / "bin" / f"vlrepro-{paper}"), "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "usage:" in r.stdout
    r = subprocess.run([str(env / "bin" / f"vlrepro-{paper}"), "no-such-verb"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "unknown verb" in r.stderr and "Traceback" not in r.stderr


def test_every_member_builds_a_wheel(tmp_path):
    r = subprocess.run(
        [_uv(), "build", "--all-packages", "--wheel", "-o", str(tmp_path), "--quiet"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    wheels = sorted(p.name.split("-")[0] for p in tmp_path.glob("*.whl"))
    assert wheels == sorted(["vlrepro_shared"] + [f"vlrepro_{p}" for p in PAPERS])
    # configs travel as package data
    import zipfile

    for paper in PAPERS:
        (whl,) = tmp_path.glob(f"vlrepro_{paper}-*.whl")
        names = zipfile.ZipFile(whl).namelist()
        assert f"vlrepro/{paper}/configs/__init__.py" in names
        assert not any(n == "vlrepro/__init__.py" for n in names)


def test_python_is_in_range():
    assert sys.version_info[:2] in ((3, 10), (3, 11))
