"""Files that are either whole or absent: atomic writes, fsync, and manifests that catch damage.

Writes go to a temporary sibling; every file and the directory are fsynced, then the temporary
is renamed into place, so a crash leaves either the old or the new version, never half of one.
A manifest (``manifest.json``) lists the size and SHA-256 of every file of a directory;
:func:`verify_manifest` checks them before anything is read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from mmgpt.errors import CheckpointError

MANIFEST = "manifest.json"
log = logging.getLogger(__name__)


def fsync_tree(path: Path) -> None:
    """fsync every file under ``path`` and the directories themselves."""
    for root, _dirs, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        fd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def recover(target: str | Path) -> bool:
    """Finish a replacement of ``target`` that a kill interrupted between its two renames:
    ``target`` is gone but the previous version waits as ``.NAME.old-*``; put it back.
    Returns whether it did."""
    target = Path(target)
    if target.exists() or not target.parent.is_dir():
        return False
    olds = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if not olds:
        return False
    os.replace(olds[-1], target)
    log.warning("%s: restored the previous version (a save was interrupted before the new one was in place)",
                target)
    return True


def clean_stale(target: str | Path) -> list[Path]:
    """Remove what interrupted writes of ``target`` left: temporaries of processes that are
    gone (``.NAME.tmp-PID-*``) and replaced versions (``.NAME.old-*``) once ``target`` exists.
    Returns the removed paths."""
    target = Path(target)
    removed = []
    if not target.parent.is_dir():
        return removed
    for p in target.parent.glob(f".{target.name}.tmp-*"):
        pid = p.name.rsplit(".tmp-", 1)[1].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or not _pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p)
    if target.exists():
        for p in target.parent.glob(f".{target.name}.old-*"):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def tidy(folder: str | Path) -> list[Path]:
    """:func:`recover` and :func:`clean_stale` every target in ``folder`` that interrupted
    writes left traces of (run at the start of a run on its run and checkpoint folders).
    Returns the paths removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    names = {p.name[1:].split(".tmp-")[0] for p in folder.glob(".*.tmp-*")}
    names |= {p.name[1:].split(".old-")[0] for p in folder.glob(".*.old-*")}
    removed = []
    for name in sorted(names):
        recover(folder / name)
        removed += clean_stale(folder / name)
    return removed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``target`` only if the block succeeds.

    A kill at any moment leaves ``target`` whole: the old one, or the new one, or (killed
    between the two renames) the old one under ``.NAME.old-*``, which :func:`recover` puts
    back; the next write first recovers and removes the dead writers' temporaries.

    Raises:
        CheckpointError: the disk is full or not writable (the old ``target`` is untouched).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    clean_stale(target)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        recover(target)
        raise CheckpointError(f"cannot write {target}: {e} (the previous version, if any, is kept)") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary file path that replaces ``target`` (fsynced) only if the block succeeds.

    Raises:
        CheckpointError: the disk is full or not writable.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(f"cannot write {target}: {e}") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a small file atomically (temp file, fsync, rename).

    Raises:
        CheckpointError: the disk is full or not writable (the old file is untouched).
    """
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(directory: Path) -> None:
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)
    entries = {str(p.relative_to(directory)): {"size": p.stat().st_size, "sha256": sha256(p)} for p in files}
    (directory / MANIFEST).write_text(json.dumps({"format": "mmgpt", "version": 1, "files": entries}, indent=1))


_HEX = frozenset("0123456789abcdef")
UNLISTED_OK = frozenset({MANIFEST, "README.md"})  # the manifest itself, and a model card added later


def _manifest_entries(directory: Path, path: Path) -> dict[str, tuple[int, str]]:
    """The manifest's ``{name: (size, sha256)}``, every entry checked for form and place.

    Raises:
        CheckpointError: not JSON, not the expected shape, or a name outside ``directory``.
    """
    try:
        files = json.loads(path.read_text())["files"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: damaged manifest ({type(e).__name__}: {e})") from None
    if not isinstance(files, dict) or not files:
        raise CheckpointError(f"{path}: damaged manifest (its files must be a non-empty mapping)")
    root = directory.resolve()
    out = {}
    for name, info in files.items():
        if (not isinstance(name, str) or not name or Path(name).is_absolute() or ".." in Path(name).parts
                or not (root / name).resolve().is_relative_to(root)):
            raise CheckpointError(f"{path}: entry {name!r} is not a file inside the checkpoint")
        if (not isinstance(info, dict) or not isinstance(info.get("size"), int) or isinstance(info["size"], bool)
                or info["size"] < 0 or not isinstance(info.get("sha256"), str) or len(info["sha256"]) != 64
                or not set(info["sha256"]) <= _HEX):
            raise CheckpointError(f"{path}: entry {name!r} must be {{size: bytes, sha256: 64 hex digits}}, got {info!r}")
        out[name] = (info["size"], info["sha256"])
    return out


def verify_manifest(directory: Path, check_hashes: bool = True, required: tuple[str, ...] = ()) -> None:
    """Check a directory against its manifest before anything in it is read: the manifest
    lists every file (``README.md`` aside) and every ``required`` one, each inside the
    directory, present, of its size and (``check_hashes``) of its SHA-256.

    Raises:
        CheckpointError: the manifest is missing or damaged; a file is missing, unlisted,
            truncated or changed.
    """
    path = directory / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{directory}: {MANIFEST} missing; not an mmgpt checkpoint")
    files = _manifest_entries(directory, path)
    for name in required:
        if name not in files:
            raise CheckpointError(f"{path}: does not list {name}")
    present = {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file() or p.is_symlink()}
    unlisted = sorted(present - set(files) - UNLISTED_OK)
    if unlisted:
        raise CheckpointError(f"{directory}: files the manifest does not list: {unlisted[:5]}")
    for name, (size, digest) in files.items():
        p = directory / name
        if p.is_symlink() or not p.is_file():
            raise CheckpointError(f"{directory}: {name} is missing" + (" (a link)" if p.is_symlink() else ""))
        if p.stat().st_size != size:
            raise CheckpointError(f"{p}: size {p.stat().st_size} bytes, expected {size} (truncated?)")
        if check_hashes and sha256(p) != digest:
            raise CheckpointError(f"{p}: contents changed since it was written (SHA-256 mismatch)")
