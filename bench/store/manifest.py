"""The results folder's manifest: what run it holds and which steps are done.

``manifest.json`` records the format, the fpscale version, the scenario's
fingerprint, the finished steps (with what a resumed run needs) and whether
the folder is complete. A folder holding another scenario's or another
version's results is refused unless overwrite is asked for, and only files
fpscale writes are ever removed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.store.files import ResultsError, write_json

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
OWN_FILES = ("manifest.json", "summary.json", "truth.npz", "searches_*.npz", "searches_*.parquet",
             "ladder*.npz", "operating_points.csv", "det_*.csv", "cmc_*.csv",
             "projection_*.json", "report.md", "report.html", "plots/*.png", "state/*.npz",
             ".*.tmp", "state/.*.tmp", "plots/.*.tmp.png")


def read_manifest(folder: Path) -> dict | None:
    """The folder's manifest, or None when it has none."""
    p = Path(folder) / MANIFEST
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ResultsError(f"{p}: unreadable manifest ({e}); remove the folder or use --overwrite") from None


def prepare_folder(folder: Path, fingerprint: str, version: str, overwrite: bool) -> dict:
    """Open a results folder for a run of the scenario with this fingerprint.

    Returns the manifest to continue from (empty steps for a new run). A folder
    holding another scenario's or another version's results is refused unless
    overwrite is set; a folder that is not ours and not empty is refused.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ResultsError(f"{folder} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".fpscale-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ResultsError(f"cannot write to {folder}: {e.strerror or e}") from None
    m = read_manifest(folder)
    fresh = {"format": FORMAT_VERSION, "fpscale": version, "fingerprint": fingerprint,
             "complete": False, "steps": {}}
    if m is None:
        if any(folder.iterdir()):
            raise ResultsError(f"{folder} is not empty and holds no fpscale results; "
                               "choose another --out")
    elif overwrite:
        pass
    elif m.get("format") != FORMAT_VERSION or m.get("fpscale") != version:
        raise ResultsError(f"{folder} holds results of fpscale {m.get('fpscale')} (format "
                           f"{m.get('format')}); this is {version}: use another --out or --overwrite")
    elif m.get("fingerprint") != fingerprint:
        raise ResultsError(f"{folder} holds results of another scenario; use another --out or --overwrite")
    else:
        return m
    # remove only what fpscale writes: never a user's other files
    for pattern in OWN_FILES:
        for p in folder.glob(pattern):
            if p.is_file():
                p.unlink()
    write_json(folder / MANIFEST, fresh)
    return fresh


def mark_step(folder: Path, manifest: dict, step: str, info: Any = True) -> None:
    """Record a finished step (and what resuming it needs) in the manifest."""
    manifest["steps"][step] = info
    write_json(Path(folder) / MANIFEST, manifest)


def mark_complete(folder: Path, manifest: dict) -> None:
    """Record that every step is done."""
    manifest["complete"] = True
    write_json(Path(folder) / MANIFEST, manifest)
