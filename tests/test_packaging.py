"""The wheel carries what `fpscale run NAME` and profiles need: built from a
copy of the tree, unpacked, and imported from there alone."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IGNORE = shutil.ignore_patterns(".git", ".venv", ".numba_cache", "results", "build", "*.egg-info",
                                "__pycache__", ".pytest_cache", ".hypothesis", ".benchmarks",
                                ".bench-ref")


def test_wheel_ships_scenarios_and_profiles_and_runs_them_by_name(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=IGNORE)  # builds never touch the checkout
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("fpscale-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    # one distinct top-level package: no `bench`, `matcher` or `synth` of its own
    assert {n.split("/")[0] for n in names} == {"fpscale", wheel.name.split("-py")[0] + ".dist-info"}
    for folder in ("scenarios", "profiles"):
        shipped = {f"fpscale/bench/{folder}/{p.name}" for p in (ROOT / "fpscale" / "bench" / folder).glob("*.toml")}
        assert shipped and shipped <= names
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    code = ("import fpscale.bench, fpscale.bench.scenario as s, fpscale.bench.profile as p, pathlib\n"
            f"assert pathlib.Path(fpscale.bench.__file__).is_relative_to({str(unpacked)!r})\n"
            "for f in sorted((pathlib.Path(fpscale.bench.__file__).parent / 'scenarios').glob('*.toml')):\n"
            "    sc = s.load_scenario(f.stem)\n"  # by name, as `fpscale run default` does
            "    assert sc.name == f.stem, (sc.name, f.stem)\n"
            "print(len(list(p.PROFILES_DIR.glob('*.toml'))))\n")
    env = dict(os.environ, PYTHONPATH=str(unpacked))
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == len(list((ROOT / "fpscale" / "bench" / "profiles").glob("*.toml")))


def _wheel(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=IGNORE)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(tmp_path / "dist")],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "dist").glob("fpscale-*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_installed_in_a_fresh_venv_runs_a_scenario(tmp_path, tiny, write_toml):
    # a fresh venv gets the wheel; its dependencies come from this
    # environment's site-packages by a path entry (no index is reachable),
    # which does not run this checkout's editable-install hook
    wheel = _wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    deps = [p for p in sys.path if p.endswith("site-packages")]
    (site / "deps.pth").write_text("\n".join(deps) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                    "--target", str(site), str(wheel)], check=True, capture_output=True, timeout=300)
    work = tmp_path / "work"
    work.mkdir()
    scen = write_toml(work / "tiny.toml", tiny(search__backends=[{"name": "numba-flat"}]))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FPSCALE_NUMBA_CACHE",
                                                            "NUMBA_CACHE_DIR")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # outside a checkout: the per-user cache
    py = venv / "bin" / "python"
    where = subprocess.run([py, "-c", "import fpscale; print(fpscale.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert Path(where).is_relative_to(site)
    out = subprocess.run([py, "-m", "fpscale", "run", "tiny.toml", "--out", "results/tiny", "--quiet"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((work / "results" / "tiny" / "summary.json").read_text())
    assert summary["backends"][0]["metrics"]["searches"] == 240
    assert (tmp_path / "cache" / "fpscale" / "numba").is_dir()
    assert not (ROOT / "results" / "tiny").exists()
