"""Every command the README shows runs as written, in the README's order, with
small sizes: the shipped scenarios are read from shrunk copies (fewer
records, searches and rungs; nothing else changed) and size flags are
rewritten. Only commands that need a Dask scheduler at a made-up address
are left out. `make test-slow` runs it (about 3 minutes on 2 cores)."""

import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from fpscale.bench import scenario as scenario_module
from fpscale.bench.cli import main
from fpscale.bench.scenario import apply_overrides

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
N_SEARCHES = 300


def readme_steps() -> list[tuple[str, object]]:
    """("fpscale", argv) and ("python", code) steps of the README, in order."""
    steps = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", README, flags=re.S):
        code = re.search(r"\.venv/bin/python - <<'EOF'\n(.*?)\nEOF\n", block, flags=re.S)
        if code:
            steps.append(("python", code.group(1)))
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith(".venv/bin/fpscale"):
                steps.append(("fpscale", shlex.split(line, comments=True)[1:]))
    return steps


def smallest_gallery(d: dict) -> int:
    # faiss indexes train on train_size records of the gallery
    trains = [b.get("train_size", 0) for b in d["search"]["backends"] if isinstance(b, dict)]
    return max([4000, *trains])


def shrink_scenario(d: dict) -> dict:
    """The same scenario with few records, searches and rungs."""
    g = smallest_gallery(d)
    return apply_overrides(d, [f"population.gallery_size={g}",
                               f"population.n_submissions={N_SEARCHES}",
                               f"projection.ladder=[{g // 20}, {g // 4}, {g}]",
                               f"search.chunk_size={min(d['search'].get('chunk_size', g), g)}"])


def shrink_argv(argv: list[str], gallery: dict[str, int]) -> list[str] | None:
    """The command with small sizes, or None when it cannot run here."""
    argv = list(argv)
    if "--scheduler" in argv and argv[argv.index("--scheduler") + 1].startswith("tcp://"):
        return None  # a real cluster's scheduler
    for i, a in enumerate(argv):
        if a.startswith("population.gallery_size="):
            name = argv[1]
            argv[i] = f"population.gallery_size={gallery.get(name, 4000)}"
        elif a.startswith("population.n_submissions="):
            argv[i] = f"population.n_submissions={N_SEARCHES}"
        elif a.startswith("projection.ladder="):
            g = gallery.get(argv[1], 4000)
            argv[i] = f"projection.ladder=[{g // 20}, {g // 4}, {g}]"
    if argv[0] == "calibrate":
        argv[argv.index("--gallery-size") + 1] = "3000"
        argv[argv.index("--searches") + 1] = str(N_SEARCHES)
        argv += ["--steps", "1", "--rescore-candidates", "5"]
    if argv[0] == "synth-stats":
        argv[argv.index("-n") + 1] = "200"
    if argv[0] == "sweep" and "--values" in argv:
        g = gallery[Path(argv[1]).stem]
        argv[argv.index("--values") + 1] = f"{g},{g + g // 2}"
    if argv[0] in ("run", "sweep", "calibrate", "search"):
        argv.append("--quiet")
    return argv


def vendor_files(cwd: Path) -> None:
    # the lists another matcher wrote at three gallery sizes (README's evaluate example)
    import pandas as pd
    lists = pd.read_csv(ROOT / "examples" / "candidates.csv")
    lists.to_csv(cwd / "lists_10k.csv", index=False)
    lists.to_csv(cwd / "lists_100k.csv", index=False)
    lists.to_parquet(cwd / "lists_1m.parquet", index=False)
    shutil.copy(ROOT / "examples" / "truth.csv", cwd / "truth.csv")


@pytest.mark.slow
def test_every_readme_command_runs(tmp_path, monkeypatch, write_toml):
    scenarios = tmp_path / "scenarios"
    scenarios.mkdir()
    gallery = {}
    for f in sorted((ROOT / "scenarios").glob("*.toml")):
        d = shrink_scenario(tomllib.loads(f.read_text()))
        gallery[f.stem] = d["population"]["gallery_size"]
        write_toml(scenarios / f.name, d)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.setattr(scenario_module, "SCENARIOS_DIR", scenarios)
    monkeypatch.chdir(tmp_path)
    ran, left_out = [], []
    for kind, step in readme_steps():
        if kind == "python":
            subprocess.run([sys.executable, "-c", step], check=True, timeout=300)
            continue
        argv = shrink_argv(step, gallery)
        if argv is None:
            left_out.append(step)
            continue
        if argv[0] == "evaluate" and "lists_10k.csv" in argv:
            vendor_files(tmp_path)
        assert main(argv) == 0, " ".join(argv)
        ran.append(argv[0])
    assert {"run", "calibrate", "report", "evaluate", "search", "sweep", "compare",
            "project", "synth-stats"} <= set(ran)
    assert all("tcp://" in " ".join(s) for s in left_out) and len(left_out) <= 2
    assert (tmp_path / "results" / "compare").is_dir()


def test_shrunk_scenarios_change_only_sizes():
    for f in sorted((ROOT / "scenarios").glob("*.toml")):
        d = tomllib.loads(f.read_text())
        s = shrink_scenario(d)
        for table in d:
            if isinstance(d[table], dict):
                changed = {k for k in d[table] if d[table][k] != s[table][k]}
                assert changed <= {"gallery_size", "n_submissions", "ladder", "chunk_size"}, f.name
        assert s["population"]["gallery_size"] <= max(50_000, d["population"]["gallery_size"])


def test_the_steps_cover_the_readme():
    steps = readme_steps()
    assert sum(k == "python" for k, _ in steps) >= 1
    n = len(re.findall(r"^\s*\.venv/bin/fpscale ", README, flags=re.M))
    assert sum(k == "fpscale" for k, _ in steps) == n
