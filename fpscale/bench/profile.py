"""Matcher profiles: the settings that make matching as hard as a published system found it.

A profile is a TOML file in ``profiles/`` (docs/calibration.md): the
population and search keys it sets (extraction noise, the within-person
quality correlation, the encoding's dimensions, the 1:1 matcher), the
published operating points it reproduces with their sources, and the fit
that ``fpscale calibrate`` wrote. A scenario names one with
``[calibration] profile = "best-2012"``; the profile's keys are then set
for it, and a scenario that sets one of them itself is refused, so a
calibrated run cannot drift from its calibration unnoticed.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

# shipped inside the package (the repository's profiles/ links here), so
# that an installed wheel has them
PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
NAME = re.compile(r"[a-z0-9][a-z0-9.-]{0,63}")
# what a profile may set: how hard matching is, never how big the run is
SETTABLE = {
    "population": ("extraction_noise", "capture_noise", "quality_correlation",
                   "unmatchable_share", "quality_weighting", "dim", "bits", "fusion"),
    "search": ("rescore_matcher", "rescore_fusion"),
}
MAX_PROFILE_BYTES = 1 << 16


class ProfileError(ValueError):
    """A profile that cannot be used as written."""


@dataclass(frozen=True)
class ProfileTarget:
    """A published operating point: FNIR at FPIR on a gallery of N, the
    shipped scenario that replicates its setting, and the source."""

    name: str
    scenario: str
    gallery_size: int
    fpir: float
    fnir: float
    source: str


@dataclass(frozen=True)
class ProfileFit:
    """What ``fpscale calibrate`` measured with the profile's settings:
    FNIR (95% interval) at the target FPIR on a gallery of ``gallery_size``,
    and how often the candidate stage listed the mate at all."""

    target: str
    parameter: str
    value: float
    gallery_size: int
    searches: int
    fnir: float
    fnir_low: float
    fnir_high: float
    fpir: float
    candidate_recall: float
    misses: int
    candidate_misses: int
    command: str
    date: str
    # the other calibrated settings the row was measured with ("key=value,
    # ..."): a later fit changes them, and the row must still say what ran
    settings: str = field(default="", metadata={"omit_if_default": True})


@dataclass(frozen=True)
class Calibration:
    """The profile a scenario runs with ("" for none), as recorded in its
    results: what it sets, what it reproduces, and how it was fitted."""

    profile: str = ""
    description: str = ""
    settings: tuple[str, ...] = ()
    targets: tuple[ProfileTarget, ...] = ()
    fit: tuple[ProfileFit, ...] = ()


def profile_path(name: str) -> Path:
    """The shipped profile file of a name; ProfileError if there is none."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ProfileError(f"calibration.profile = {str(name)[:80]!r}: a profile name is "
                           "lower-case letters, digits, '.' or '-'")
    p = PROFILES_DIR / f"{name}.toml"
    if not p.is_file():
        have = ", ".join(sorted(f.stem for f in PROFILES_DIR.glob("*.toml"))) or "none"
        raise ProfileError(f"calibration.profile = {name!r}: no such profile (shipped: {have})")
    return p


def read_profile(name: str) -> dict:
    """The parsed profile file of a name (a TOML table), checked."""
    p = profile_path(name)
    data = p.read_bytes()[: MAX_PROFILE_BYTES + 1]
    if len(data) > MAX_PROFILE_BYTES:
        raise ProfileError(f"{p}: larger than {MAX_PROFILE_BYTES} bytes")
    try:
        d = tomllib.loads(data.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ProfileError(f"{p}: not valid TOML: {e}") from None
    unknown = sorted(set(d) - {"name", "description", "population", "search", "targets", "fit"})
    if unknown:
        raise ProfileError(f"{p}: unknown key {unknown[0]!r}")
    if d.get("name") != name:
        raise ProfileError(f"{p}: its name is {d.get('name')!r}, not {name!r}")
    for table, keys in SETTABLE.items():
        t = d.get(table, {})
        if not isinstance(t, dict) or any(k not in keys for k in t):
            raise ProfileError(f"{p}: [{table}] may set only {', '.join(keys)}")
    calibration_from_dict(record(d))  # the record's types, before any use
    return d


def record(d: dict) -> dict:
    """The [calibration] record of a parsed profile (what a scenario keeps)."""
    settings = [f"{table}.{k} = {v!r}" for table in SETTABLE for k, v in d.get(table, {}).items()]
    return {"profile": d["name"], "description": d.get("description", ""),
            "settings": settings, "targets": d.get("targets", []), "fit": d.get("fit", [])}


def resolve_profile(d: dict) -> dict:
    """A parsed scenario with its profile applied: the profile's keys set in
    [population] and [search], and [calibration] holding the full record.
    A scenario that names no profile is returned as it is."""
    cal = d.get("calibration")
    if cal is None:
        return d
    if not isinstance(cal, dict):
        raise ProfileError("[calibration] must be a table")
    if set(cal) != {"profile"}:  # already resolved: a scenario read back from results
        _check_applied(d, cal)
        return d
    name = cal["profile"]
    if name in ("", "none"):
        return {k: v for k, v in d.items() if k != "calibration"}
    prof = read_profile(name)
    out = dict(d)
    for table in SETTABLE:
        mine = dict(out.get(table, {}))
        for k, v in prof.get(table, {}).items():
            if k in mine and mine[k] != v:
                raise ProfileError(f"[{table}] {k} = {mine[k]!r}: profile {name!r} sets it to {v!r}; "
                                   "remove it from the scenario, or run without the profile "
                                   "(--set calibration.profile=none)")
            mine[k] = v
        if mine:
            out[table] = mine
    out["calibration"] = record(prof)
    return out


def _check_applied(d: dict, cal: dict) -> None:
    # a resolved record must describe the values the scenario really has
    settings = cal.get("settings", [])
    if not isinstance(settings, (list, tuple)):
        raise ProfileError("[calibration] settings: must be a list")
    for line in settings:
        key = str(line).split(" = ", 1)[0]
        table, _, k = key.partition(".")
        if table not in SETTABLE or k not in SETTABLE[table]:
            raise ProfileError(f"[calibration] settings: {str(line)[:60]!r} is not a profile key")
        t = d.get(table, {})
        if not isinstance(t, dict) or k not in t or f"{key} = {t[k]!r}" != line:
            raise ProfileError(f"[calibration] settings: {str(line)[:60]!r} does not match "
                               f"[{table}] {k} of the scenario")


def _num(where: str, v, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or not lo <= v <= hi:
        raise ProfileError(f"[calibration] {where} = {str(v)[:40]}: must be a number in [{lo}, {hi}]")
    return float(v)


def _int(where: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 10**11:
        raise ProfileError(f"[calibration] {where} = {str(v)[:40]}: must be a count")
    return v


def _str(where: str, v) -> str:
    if not isinstance(v, str) or len(v) > 2000:
        raise ProfileError(f"[calibration] {where}: must be a string of at most 2,000 characters")
    return v


def _rows(where: str, rows, build):
    if not isinstance(rows, (list, tuple)) or len(rows) > 50 or \
            not all(isinstance(r, dict) for r in rows):
        raise ProfileError(f"[calibration] {where}: must be a list of at most 50 tables")
    return tuple(build(f"{where}[{i}]", r) for i, r in enumerate(rows))


def _target(where: str, r: dict) -> ProfileTarget:
    known = {"name", "scenario", "gallery_size", "fpir", "fnir", "source"}
    if set(r) != known:
        raise ProfileError(f"[calibration] {where}: needs exactly {', '.join(sorted(known))}")
    return ProfileTarget(_str(where + ".name", r["name"]), _str(where + ".scenario", r["scenario"]),
                         _int(where + ".gallery_size", r["gallery_size"]),
                         _num(where + ".fpir", r["fpir"], 0, 1), _num(where + ".fnir", r["fnir"], 0, 1),
                         _str(where + ".source", r["source"]))


def _fit(where: str, r: dict) -> ProfileFit:
    names = ProfileFit.__dataclass_fields__
    # fields added later (omit_if_default) are optional: older rows lack them
    optional = [n for n, f in names.items() if f.metadata.get("omit_if_default")]
    required = [n for n in names if n not in optional]
    if not set(required) <= set(r) <= set(names):
        raise ProfileError(f"[calibration] {where}: needs exactly {', '.join(required)} "
                           f"and may have {', '.join(optional)}")
    return ProfileFit(
        _str(where + ".target", r["target"]), _str(where + ".parameter", r["parameter"]),
        _num(where + ".value", r["value"], -1e9, 1e9), _int(where + ".gallery_size", r["gallery_size"]),
        _int(where + ".searches", r["searches"]),
        *(_num(f"{where}.{k}", r[k], 0, 1) for k in ("fnir", "fnir_low", "fnir_high", "fpir",
                                                      "candidate_recall")),
        _int(where + ".misses", r["misses"]), _int(where + ".candidate_misses", r["candidate_misses"]),
        _str(where + ".command", r["command"]), _str(where + ".date", r["date"]),
        _str(where + ".settings", r.get("settings", "")))


def calibration_from_dict(t: dict) -> Calibration:
    """Validate a resolved [calibration] record (or Calibration as a dict)."""
    if not isinstance(t, dict):
        raise ProfileError("[calibration] must be a table")
    known = {"profile", "description", "settings", "targets", "fit"}
    unknown = sorted(set(t) - known)
    if unknown:
        raise ProfileError(f"[calibration] unknown key {str(unknown[0])[:60]!r}; allowed: "
                           + ", ".join(sorted(known)))
    name = t.get("profile", "")
    if name and not NAME.fullmatch(str(name)):
        raise ProfileError(f"[calibration] profile = {str(name)[:60]!r}: not a profile name")
    settings = t.get("settings", [])
    if not isinstance(settings, (list, tuple)) or len(settings) > 50:
        raise ProfileError("[calibration] settings: must be a list of at most 50 lines")
    return Calibration(_str("profile", name), _str("description", t.get("description", "")),
                       tuple(_str("settings", s) for s in settings),
                       _rows("targets", t.get("targets", []), _target),
                       _rows("fit", t.get("fit", []), _fit))
