"""COCO captions JSON (``captions_train2017.json``): images plus caption annotations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmgpt.datasets.readers.base import OnError, Reader, load_json, located
from mmgpt.datasets.readers.captions import (
    IMAGE_PROMPT,
    CaptionMode,
    caption_samples,
    check_mode,
    clean_caption,
)
from mmgpt.datasets.schema import Sample
from mmgpt.errors import DataError


def _image_entry(entry: Any) -> tuple[int | str, str]:
    """``(id, file_name)`` of one ``images`` entry."""
    if not isinstance(entry, dict) or not isinstance(entry.get("id"), int | str):
        raise DataError("an image entry needs an integer or string 'id'")
    name = entry.get("file_name")
    if not isinstance(name, str) or not name:
        raise DataError(f"image id {entry['id']!r} needs a 'file_name'")
    return entry["id"], name


def _annotation(entry: Any, files: dict[int | str, str]) -> tuple[int | str, str]:
    """``(image_id, caption)`` of one ``annotations`` entry whose image exists."""
    if not isinstance(entry, dict):
        raise DataError(f"an annotation must be an object, got {type(entry).__name__}")
    image_id = entry.get("image_id")
    if not isinstance(image_id, int | str) or image_id not in files:
        raise DataError(f"image_id {image_id!r} is not in 'images'")
    return image_id, clean_caption(entry.get("caption"), "caption")


class CocoCaptionsReader(Reader):
    """Iterable over the samples of COCO caption files; see :func:`read_coco_captions`."""

    def __init__(
        self, json_path: str | Path, media_folder: str | Path | None = None, *, mode: CaptionMode = "each",
        prompt: str = IMAGE_PROMPT, on_error: OnError = "raise", allow_outside_media_folder: bool = False,
    ) -> None:
        check_mode(mode)
        super().__init__(json_path, on_error=on_error, media_folder=media_folder,
                         allow_outside_media_folder=allow_outside_media_folder)
        self.mode = mode
        self.prompt = prompt

    def _read_file(self, path: Path) -> Iterator[Sample | DataError]:
        try:
            data = load_json(path)
        except DataError as e:
            yield e
            return
        if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations")):
            yield DataError(f"{path}: a COCO captions file needs 'images' and 'annotations' lists")
            return
        root = self.media_root(path)

        files: dict[int | str, Path | str] = {}  # image id -> resolved path
        names: dict[int | str, str] = {}  # image id -> file_name as written
        order: list[tuple[int, int | str]] = []  # (index in images, id) in file order
        for i, entry in enumerate(data["images"]):
            where = f"{path}:images[{i}]"
            try:
                image_id, name = _image_entry(entry)
                if image_id in files:
                    raise DataError(f"duplicate image id {image_id!r}")
                files[image_id] = root(name)
            except DataError as e:
                yield located(where, e)
                continue
            names[image_id] = name
            order.append((i, image_id))

        captions: dict[int | str, list[str]] = {}
        for j, entry in enumerate(data["annotations"]):
            where = f"{path}:annotations[{j}]"
            try:
                image_id, caption = _annotation(entry, files)
            except DataError as e:
                yield located(where, e)
                continue
            if self.mode == "each":
                meta = {"image_id": image_id, "file_name": names[image_id], "annotation_id": entry.get("id")}
                media = [files[image_id]]
                (sample,) = caption_samples("image", media, self.prompt, [caption], "each", meta, where)
                del sample.meta["caption_index"]  # always 0 here: one caption per annotation
                yield sample
            else:
                captions.setdefault(image_id, []).append(caption)

        if self.mode == "each":
            return
        for i, image_id in order:
            refs = captions.get(image_id)
            if not refs:
                yield DataError(f"{path}:images[{i}]: image id {image_id!r} has no caption annotation")
                continue
            meta = {"image_id": image_id, "file_name": names[image_id]}
            media = [files[image_id]]
            yield from caption_samples("image", media, self.prompt, refs, self.mode, meta, f"{path}:images[{i}]")


def read_coco_captions(
    json_path: str | Path, media_folder: str | Path | None = None, *, mode: CaptionMode = "each",
    prompt: str = IMAGE_PROMPT, on_error: OnError = "raise", allow_outside_media_folder: bool = False,
) -> CocoCaptionsReader:
    """Read a COCO captions file as image-captioning chats.

    The file is ``{"images": [{"id", "file_name"}], "annotations": [{"image_id", "caption"}]}``
    (other keys are ignored) and is loaded whole. Every sample is ``user: [image, prompt]``,
    then ``assistant: caption`` (captions are stripped of surrounding whitespace):

    * ``mode="each"`` (training): one sample per annotation, in annotation order;
      ``source`` is ``"<file>:annotations[<j>]"``; ``meta`` has ``image_id``, ``file_name``
      and ``annotation_id`` (the annotation's ``id``, or None).
    * ``mode="first"`` / ``"all"`` (evaluation): one sample per image, in ``images`` order;
      ``source`` is ``"<file>:images[<i>]"``; ``meta`` has ``image_id``, ``file_name`` and
      ``references`` (every caption of the image). ``"first"`` answers with the first
      caption; ``"all"`` has no assistant turn (a prompt to generate from). An image without
      any caption is a bad row.

    Image paths are absolute :class:`pathlib.Path` objects under ``media_folder`` (COCO's
    ``train2017/``); they are not opened. A ``file_name`` outside the media folder (absolute, or
    with ``..``) is a bad row unless ``allow_outside_media_folder``.

    Args:
        json_path: a JSON file or a glob of them (read in sorted order).
        media_folder: the directory ``file_name`` is relative to (default: the JSON's directory).
        allow_outside_media_folder: accept file names outside ``media_folder``.
        mode: ``"each"``, ``"first"`` or ``"all"``.
        prompt: the user's instruction after the image.
        on_error: ``"raise"`` on the first bad row, or ``"skip"`` it and count it.

    Returns:
        A :class:`CocoCaptionsReader`; iterate it for the samples.

    Raises:
        ConfigError: ``mode`` or ``on_error`` is not a known value.
        DataError: the path or glob names no file (at once); while iterating, with
            ``on_error="raise"``: invalid JSON, missing lists, an image without ``id`` or
            ``file_name``, a duplicate image id, an annotation whose ``image_id`` is not in
            ``images`` (named in the message), or an empty caption.
    """
    return CocoCaptionsReader(json_path, media_folder, mode=mode, prompt=prompt, on_error=on_error,
                              allow_outside_media_folder=allow_outside_media_folder)
