"""Results folders: atomic writes, a manifest that says what is done.

Every file is written to a temporary name in the same folder, flushed to
disk and renamed over its final name, so a crash leaves either the old file
or the new one, never a truncated file that looks valid. ``manifest.json``
records the scenario's fingerprint, the fpscale version, the finished steps
and whether the folder is complete.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
OWN_FILES = ("manifest.json", "summary.json", "truth.npz", "searches_*.npz", "ladder*.npz",
             "projection_*.json", "report.md", "report.html", "plots/*.png", "state/*.npz",
             ".*.tmp", "state/.*.tmp", "plots/.*.tmp.png")


class ResultsError(Exception):
    """A results folder that cannot be used as asked."""


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (NaN written as null)."""
    data = json.dumps(_clean(obj), indent=2, sort_keys=False).encode()
    _atomic(Path(path), lambda f: f.write(data + b"\n"))


def write_text(path: Path, text: str) -> None:
    _atomic(Path(path), lambda f: f.write(text.encode()))


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write an uncompressed npz atomically (plain arrays only: no pickles)."""
    for k, a in arrays.items():
        if np.asarray(a).dtype == object:
            raise ResultsError(f"{k}: object arrays are not written")
    _atomic(Path(path), lambda f: np.savez(f, **arrays))


def read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _clean(o):
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (np.floating, float)):
        f = float(o)
        return f if np.isfinite(f) else None
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.ndarray):
        return _clean(o.tolist())
    return o


def read_manifest(folder: Path) -> dict | None:
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
    manifest["steps"][step] = info
    write_json(Path(folder) / MANIFEST, manifest)


def mark_complete(folder: Path, manifest: dict) -> None:
    manifest["complete"] = True
    write_json(Path(folder) / MANIFEST, manifest)
