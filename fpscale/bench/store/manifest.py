"""The results folder's manifest: what run it holds, which steps are done and
which files fpscale wrote there.

``manifest.json`` records the format, the fpscale version, the scenario's
fingerprint, the finished steps (with what a resumed run needs), whether the
folder is complete, and the size and sha256 of every file the run wrote.
A file's name enters the manifest before the file is written, so whatever a
crash leaves behind is listed, and fpscale removes only files its manifest
lists (``--overwrite`` included): never a user's other files, never through
a symbolic link, never outside the folder.

A results folder is locked while a run (or ``fpscale report`` or
``fpscale project``) works in it: an exclusive advisory lock on
``.fpscale.lock``, which names the holder, so that a second run into the
same folder is refused with one line instead of mixing two runs' files.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import re
import socket
from pathlib import Path
from typing import Any

from fpscale.bench.store.files import (ResultsError, file_digest, is_plain_file, tmp_name, write_bytes,
                               write_csv, write_json, write_npz, write_parquet, write_text)

FORMAT_VERSION = 2
MANIFEST = "manifest.json"
LOCK = ".fpscale.lock"
SUBFOLDERS = ("state", "plots")
MAX_MANIFEST_BYTES = 16 << 20
# names fpscale gives its files: a name it derived itself, in the folder or
# in one of its two sub-folders, with no way up or out
_REL = re.compile(r"(?:(?:state|plots)/)?[A-Za-z0-9_][A-Za-z0-9_.+@=-]{0,200}")
_SHA = re.compile(r"[0-9a-f]{64}")


class DamagedError(ResultsError):
    """A folder fpscale wrote that it cannot use as it is: the message says
    what is wrong; the command line adds the command that starts afresh."""


def safe_rel(rel: str) -> bool:
    """Whether rel is a name fpscale could have given one of its files."""
    return (isinstance(rel, str) and _REL.fullmatch(rel) is not None and ".." not in rel
            and not rel.endswith(".fpscale-tmp"))


def _check_entry(rel: Any, v: Any) -> str | None:
    if not safe_rel(rel) or rel == MANIFEST:
        return f"lists a file named {str(rel)[:80]!r}, which is not a name fpscale writes"
    if v == {"pending": True}:
        return None
    if (not isinstance(v, dict) or set(v) != {"size", "sha256"} or not isinstance(v["size"], int)
            or isinstance(v["size"], bool) or v["size"] < 0 or not isinstance(v["sha256"], str)
            or not _SHA.fullmatch(v["sha256"])):
        return f"holds a malformed entry for {rel}"
    return None


def manifest_problem(m: Any) -> str | None:
    """None for a well-formed manifest of this format, else what is wrong."""
    if not isinstance(m, dict):
        return f"is a JSON {type(m).__name__}, not an object"
    want = {"format": int, "fpscale": str, "fingerprint": str, "complete": bool, "steps": dict,
            "files": dict}
    for k, t in want.items():
        if k not in m:
            return f"lacks {k!r}"
        if not isinstance(m[k], t) or (t is int and isinstance(m[k], bool)):
            return f"holds a {type(m[k]).__name__} for {k!r}"
    extra = set(m) - set(want)
    if extra:
        return f"holds unknown keys ({', '.join(sorted(map(str, extra)))[:80]})"
    if not all(isinstance(k, str) and len(k) <= 300 for k in m["steps"]):
        return "holds malformed step names"
    for rel, v in m["files"].items():
        bad = _check_entry(rel, v)
        if bad:
            return bad
    return None


def looks_like_fpscale(m: Any) -> bool:
    """A manifest fpscale wrote (this format or an older one)."""
    return isinstance(m, dict) and isinstance(m.get("format"), int) and "fingerprint" in m \
        and "fpscale" in m


def _load_json(p: Path) -> Any:
    if p.is_symlink() or not p.is_file():
        raise DamagedError(f"{p} is not a plain file")
    try:
        if p.stat().st_size > MAX_MANIFEST_BYTES:
            raise DamagedError(f"{p} is larger than any manifest fpscale writes")
        return json.loads(p.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as e:
        raise DamagedError(f"{p} is not readable JSON ({str(e)[:120]})") from None


def read_manifest(folder: Path) -> dict | None:
    """The folder's manifest, None when it has none; DamagedError when it
    is unreadable or not what this fpscale writes."""
    p = Path(folder) / MANIFEST
    if not os.path.lexists(p):
        return None
    m = _load_json(p)
    if looks_like_fpscale(m) and m.get("format") != FORMAT_VERSION:
        return m  # another format: refused or overwritten by the caller
    bad = manifest_problem(m)
    if bad:
        # fpscale's lock beside it: fpscale's manifest, damaged
        if looks_like_fpscale(m) or is_plain_file(Path(folder) / LOCK):
            raise DamagedError(f"{p} {bad}")
        raise ResultsError(f"{Path(folder)} holds a manifest.json that fpscale did not write "
                           f"(it {bad}); fpscale removes only files its own manifest lists: "
                           "choose another --out")
    return m


# -- the lock -----------------------------------------------------------------

class _Lock:
    """An exclusive advisory lock on a results folder, held until release."""

    def __init__(self, folder: Path, what: str) -> None:
        path = folder / LOCK
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise ResultsError(f"{path} is not a plain file; fpscale will not lock through it")
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as e:
            raise ResultsError(f"cannot write to {folder}: {e.strerror or e}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _holder(self.fd)
            os.close(self.fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ResultsError(f"{folder} is in use by another fpscale process ({holder}); "
                                   "wait for it to finish or choose another --out") from None
            raise ResultsError(f"cannot lock {folder}: {e.strerror or e}") from None
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        info = (f"fpscale {what}, pid {os.getpid()} on {socket.gethostname()}, "
                f"started {started}").encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, info, 0)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = -1


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 300, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    text = "".join(c if c.isprintable() else "?" for c in text)[:200]
    return text or "holder unknown"


def file_problem(folder: Path, files: dict, rel: str) -> str | None:
    """None when the file rel of folder is what its manifest's files list
    records (size and sha256), else what is wrong. Reads only."""
    entry = files.get(rel)
    if entry is None:
        return "is not listed in the manifest"
    p = Path(folder) / rel
    if not os.path.lexists(p):
        return "is missing"
    if not is_plain_file(p) or p.parent.is_symlink():
        return "is not a plain file"
    if entry.get("pending"):
        return "was not finished"
    try:
        got = file_digest(p)
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if got["size"] != entry["size"]:
        return f"has {got['size']:,} bytes where fpscale wrote {entry['size']:,}"
    if got["sha256"] != entry["sha256"]:
        return "differs from what fpscale wrote (checksum)"
    return None


# -- the folder ---------------------------------------------------------------

class ResultsFolder:
    """A locked results folder and its manifest. Every file fpscale writes
    there goes through it, so that the manifest lists it with its checksum."""

    def __init__(self, path: Path, manifest: dict, lock: _Lock) -> None:
        self.path = Path(path)
        self.manifest = manifest
        self._lock = lock

    def __enter__(self) -> ResultsFolder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the lock."""
        self._lock.release()

    @property
    def files(self) -> dict:
        return self.manifest["files"]

    def file(self, rel: str) -> Path:
        """The path of one of fpscale's files (ResultsError for a name it
        would not give, or a sub-folder that is a link)."""
        if not safe_rel(rel):
            raise ResultsError(f"{rel!r} is not a name fpscale gives its files")
        p = self.path / rel
        if rel.count("/") and (p.parent.is_symlink() or (p.parent.exists() and not p.parent.is_dir())):
            raise ResultsError(f"{p.parent} is not a folder (a link or a file); fpscale does not "
                               "write through it")
        return p

    def save(self) -> None:
        """Write the manifest as it stands."""
        write_json(self.path / MANIFEST, self.manifest)

    def mark(self, step: str, info: Any = True) -> None:
        """Record a finished step (and what resuming it needs)."""
        self.manifest["steps"][step] = info
        self.save()

    def mark_complete(self) -> None:
        """Record that every step is done."""
        self.manifest["complete"] = True
        self.save()

    def _write(self, rel: str, fn, *args, **kwargs) -> dict:
        p = self.file(rel)
        if rel not in self.files:  # listed before it exists: a crash leaves nothing unlisted
            self.files[rel] = {"pending": True}
            self.save()
        info = fn(p, *args, **kwargs)
        self.files[rel] = info
        return info

    def write_npz(self, rel: str, **arrays) -> dict:
        return self._write(rel, write_npz, **arrays)

    def write_json(self, rel: str, obj: Any) -> dict:
        return self._write(rel, write_json, obj)

    def write_text(self, rel: str, text: str) -> dict:
        return self._write(rel, write_text, text)

    def write_bytes(self, rel: str, data: bytes) -> dict:
        return self._write(rel, write_bytes, data)

    def write_csv(self, rel: str, header: list[str], rows) -> dict:
        return self._write(rel, write_csv, header, rows)

    def write_parquet(self, rel: str, tables) -> dict:
        return self._write(rel, write_parquet, tables)

    def problem(self, rel: str) -> str | None:
        """None when the listed file is what fpscale wrote, else what is wrong."""
        return file_problem(self.path, self.files, rel)

    def remove(self, rel: str) -> None:
        """Delete one listed file (and its temporary name) and unlist it;
        links and other non-files are left alone."""
        if rel not in self.files:
            return
        p = self.path / rel
        if safe_rel(rel) and not p.parent.is_symlink():
            for f in (p, tmp_name(p)):
                if is_plain_file(f):
                    f.unlink()
        del self.files[rel]

    def remove_all(self, prefix: str = "") -> None:
        """Delete every listed file whose name starts with prefix."""
        for rel in [r for r in self.files if r.startswith(prefix)]:
            self.remove(rel)


def _check_folder(folder: Path) -> None:
    text = str(folder)
    if "\0" in text:
        raise ResultsError("the results folder's name holds a NUL character")
    if len(os.fsencode(text)) > 3000 or any(len(os.fsencode(p)) > 255 for p in folder.parts):
        raise ResultsError(f"the results folder's name is too long ({len(text)} characters; "
                           "at most 255 per folder name)")
    if folder.exists() and not folder.is_dir():
        raise ResultsError(f"{folder} exists and is not a folder")
    for sub in SUBFOLDERS:
        p = folder / sub
        if p.is_symlink() or (p.exists() and not p.is_dir()):
            raise DamagedError(f"{p} is not a folder (a link or a file) and fpscale keeps its "
                               f"{'checkpoints' if sub == 'state' else 'plots'} there; fpscale "
                               "did not put it there and will not remove it")


def _others(folder: Path) -> list[str]:
    """What the folder holds besides fpscale's lock and empty sub-folders."""
    out = []
    for p in folder.iterdir():
        if p.name == LOCK:
            continue
        if p.name in SUBFOLDERS and p.is_dir() and not p.is_symlink() and not any(p.iterdir()):
            continue
        out.append(p.name)
    return out


def _decide(folder: Path, m: dict | None, fingerprint: str, version: str,
            overwrite: bool) -> str:
    """"fresh", "resume" or "overwrite"; ResultsError when refused."""
    if m is None:
        if folder.exists() and _others(folder):
            raise ResultsError(f"{folder} is not empty and holds no fpscale results; "
                               "choose another --out")
        return "fresh"
    if m.get("format") != FORMAT_VERSION:
        raise ResultsError(f"{folder} holds results of fpscale {str(m.get('fpscale'))[:40]} "
                           f"(format {str(m.get('format'))[:10]}), which did not list its files; "
                           "fpscale removes only files it listed: choose another --out")
    if overwrite:
        return "overwrite"
    if m.get("fpscale") != version:
        raise ResultsError(f"{folder} holds results of fpscale {m.get('fpscale')[:40]} (format "
                           f"{m.get('format')}); this is {version}: use another --out or --overwrite")
    if m.get("fingerprint") != fingerprint:
        raise ResultsError(f"{folder} holds results of another scenario; use another --out or --overwrite")
    return "resume"


def open_for_run(folder: Path, fingerprint: str, version: str, overwrite: bool,
                 what: str = "run") -> ResultsFolder:
    """Open and lock a results folder for a run of the scenario with this
    fingerprint (what: the command, named in the lock): resumed where it
    holds this run, emptied of fpscale's own files under overwrite, refused
    (ResultsError) when it holds something else. Nothing is created before
    every check that needs no lock passed."""
    folder = Path(folder)
    _check_folder(folder)
    if folder.exists():
        _decide(folder, read_manifest(folder), fingerprint, version, overwrite)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ResultsError(f"cannot write to {folder}: {e.strerror or e}") from None
    lock = _Lock(folder, what)
    try:
        _check_folder(folder)
        m = read_manifest(folder)  # again, now that no one else can change it
        how = _decide(folder, m, fingerprint, version, overwrite)
        if how == "resume":
            return ResultsFolder(folder, m, lock)
        fresh = {"format": FORMAT_VERSION, "fpscale": version, "fingerprint": fingerprint,
                 "complete": False, "steps": {}, "files": {}}
        rf = ResultsFolder(folder, fresh, lock)
        if how == "overwrite":
            old = ResultsFolder(folder, m, lock)
            old.remove_all()
        try:
            rf.save()
        except ResultsError as e:
            raise ResultsError(f"cannot write to {folder}: {e}") from None
        return rf
    except BaseException:
        lock.release()
        raise


def open_existing(folder: Path, what: str) -> ResultsFolder:
    """Lock a finished results folder to add to it (``fpscale report``,
    ``fpscale project``): it must hold fpscale's manifest."""
    folder = Path(folder)
    _check_folder(folder)
    m = read_manifest(folder)
    if m is None:
        raise ResultsError(f"{folder} holds no {MANIFEST}: it is not a results folder of fpscale run")
    if m.get("format") != FORMAT_VERSION:
        raise ResultsError(f"{folder} holds results of another fpscale format "
                           f"({str(m.get('format'))[:10]}); run the scenario again")
    lock = _Lock(folder, what)
    try:
        m = read_manifest(folder)
        if m is None or m.get("format") != FORMAT_VERSION:
            raise ResultsError(f"{folder} changed while it was being opened")
        return ResultsFolder(folder, m, lock)
    except BaseException:
        lock.release()
        raise
