"""Every fpscale command the README shows parses, and names scenarios,
profiles and example files that exist."""

import re
import shlex
from pathlib import Path

import pytest

from fpscale.bench.cli import build_parser
from fpscale.bench.profile import read_profile
from fpscale.bench.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    out = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        for cmd in block.replace("\\\n", " ").splitlines():
            cmd = cmd.strip()
            if cmd.startswith(".venv/bin/fpscale"):
                out.append(shlex.split(cmd, comments=True)[1:])
    return out


COMMANDS = readme_commands()


def test_the_readme_shows_the_commands():
    names = {c[0] for c in COMMANDS if c and not c[0].startswith("-")}
    assert {"run", "calibrate", "report", "evaluate", "search", "sweep", "compare", "project"} <= names


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(c)[:60] for c in COMMANDS])
def test_readme_command_parses_and_names_what_exists(argv):
    if argv == ["--help"]:
        return
    args = build_parser().parse_args(argv)  # a stale flag exits here
    if argv[0] in ("run", "sweep"):
        load_scenario(args.scenario, getattr(args, "set", None) or ())
    if argv[0] == "calibrate":
        read_profile(args.profile)
    if argv[0] == "evaluate":
        for f in [*args.candidates, args.truth]:
            if f.startswith("examples/"):
                assert (ROOT / f).is_file(), f
