"""The wheel carries what `fpscale run NAME` and profiles need: built from a
copy of the tree, unpacked, and imported from there alone."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

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
