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
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from mmgpt.errors import CheckpointError

MANIFEST = "manifest.json"


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


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``target`` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
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
        fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a small file atomically (temp file, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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


def verify_manifest(directory: Path, check_hashes: bool = True) -> None:
    """Check that every file the manifest lists exists with its size (and hash).

    Raises:
        CheckpointError: a file is missing, truncated or changed.
    """
    path = directory / MANIFEST
    if not path.is_file():
        raise CheckpointError(f"{directory}: {MANIFEST} missing; not an mmgpt checkpoint")
    try:
        files = json.loads(path.read_text())["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: damaged manifest ({e})") from None
    for name, info in files.items():
        p = directory / name
        if not p.is_file():
            raise CheckpointError(f"{directory}: {name} is missing")
        if p.stat().st_size != info["size"]:
            raise CheckpointError(f"{p}: size {p.stat().st_size} bytes, expected {info['size']} (truncated?)")
        if check_hashes and sha256(p) != info["sha256"]:
            raise CheckpointError(f"{p}: contents changed since it was written (SHA-256 mismatch)")
