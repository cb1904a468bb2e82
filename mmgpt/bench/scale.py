"""Data bigger than memory: peak RSS and time to the first steps on 200 k rows vs 2 k.

Stage 3 (``instruct``) on image-caption chats, 2 steps, from a fresh quickstart-preset model:
from a JSONL of 200 k rows (and of 2 k) naming 50 images on disk, from a plain WebDataset
shard of 200 k keys (and of 2 k), each a PNG and its caption, and from the same keys in 8
gzip-compressed shards, which are streamed (``mmgpt.train.stream``) instead of indexed. A measured unit is building the
trainer (reading or indexing the data) plus the 2 steps. Peak memory is the RSS of a child that
ran one side alone (the bench's ``--memory separate``); rows are indexed, not held, so 100x the
rows should cost little more than the index.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from mmgpt.bench.peers import preset_path
from mmgpt.bench.timing import Settings, SideFactory
from mmgpt.bench.training import build_trainer

SIZES = {False: {"small": 2_000, "large": 200_000}, True: {"small": 200, "large": 2_000}}
IMAGES = 50


def _images(root: Path) -> list[tuple[Path, str]]:
    from mmgpt.datasets.shapestones import write_coco

    done = root / "coco" / "annotations" / "captions_train.json"
    if not done.is_file():
        write_coco(root / "coco", {"train": IMAGES}, image_size=32, progress=False)
    data = json.loads(done.read_text())
    return [(root / "coco" / "train" / im["file_name"], a["caption"])
            for im, a in zip(data["images"], data["annotations"])]


def ensure_jsonl(root: Path, n: int) -> Path:
    """``root/captions_<n>.jsonl``: ``n`` caption chats cycling over 50 images, whose paths are
    relative to the file (as a user's JSONL would be), so a moved or cached work folder still works."""
    path = root / f"captions_{n}.jsonl"
    if not path.is_file():
        images = _images(root)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w") as f:
            for i in range(n):
                image, caption = images[i % IMAGES]
                f.write(json.dumps({"messages": [
                    {"role": "user", "content": [{"type": "image", "image": image.relative_to(root).as_posix()},
                                                 {"type": "text", "text": "Describe the image."}]},
                    {"role": "assistant", "content": caption}]}) + "\n")
        tmp.replace(path)
    return path


def ensure_tar(root: Path, n: int) -> Path:
    """``root/shard_<n>.tar``: ``n`` keys, each ``.png`` + ``.txt`` (50 images repeated)."""
    path = root / f"shard_{n}.tar"
    if not path.is_file():
        members = [(image.read_bytes(), caption.encode()) for image, caption in _images(root)]
        tmp = path.with_suffix(".tmp")
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for i in range(n):
                for ext, data in zip(("png", "txt"), members[i % IMAGES]):
                    info = tarfile.TarInfo(f"{i:07d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        tmp.replace(path)
    return path


def ensure_tgz(root: Path, n: int, shards: int = 8) -> Path:
    """``root/tgz_<n>/shard-XX.tar.gz``: ``n`` keys as in :func:`ensure_tar`, dealt to
    ``shards`` gzip-compressed shards (streamed, not indexed); returns the shards' glob."""
    folder = root / f"tgz_{n}"
    done = folder / "done"
    if not done.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        members = [(image.read_bytes(), caption.encode()) for image, caption in _images(root)]
        for k in range(shards):
            with tarfile.open(folder / f"shard-{k:02d}.tar.gz", "w:gz", compresslevel=1) as tar:
                for i in range(k, n, shards):
                    for ext, data in zip(("png", "txt"), members[i % IMAGES]):
                        info = tarfile.TarInfo(f"{i:07d}.{ext}")
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
        done.write_text("")
    return folder / "shard-*.tar.gz"


def sides(settings: Settings) -> dict[str, SideFactory]:
    """``jsonl_*``, ``tar_*`` and ``tgz_*`` (``_large``, ``_small``): build + 2 steps each."""
    size = SIZES[settings.quick]
    work = Path(settings.workdir) / "scale"
    work.mkdir(parents=True, exist_ok=True)
    files = {"jsonl_large": (ensure_jsonl, size["large"]), "jsonl_small": (ensure_jsonl, size["small"]),
             "tar_large": (ensure_tar, size["large"]), "tar_small": (ensure_tar, size["small"]),
             "tgz_large": (ensure_tgz, size["large"]), "tgz_small": (ensure_tgz, size["small"])}
    paths = {side: make_file(work, n) for side, (make_file, n) in files.items()}  # before any timing

    def make(side: str):
        def factory():
            data = paths[side]
            preset = preset_path("tiny" if settings.quick else "quickstart")
            size_mb = sum(p.stat().st_size for p in data.parent.glob(data.name)) / 2**20
            info = {"rows": files[side][1], "file": str(data), "file_mb": size_mb, "steps": 2}

            def step() -> dict[str, float]:
                trainer = build_trainer(work, f"scale-{side}", preset, data, settings, stage="instruct",
                                        batch_size=8, max_steps=2, feature_cache=False, precision="fp32")
                for _, batches, _ in trainer.loader.steps(0, 2):
                    trainer.step(batches)
                return {"rows_indexed": float(trainer.loader.read if trainer.stream else len(trainer.data))}

            return step, info

        return factory

    return {name: make(name) for name in files}
