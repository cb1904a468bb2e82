"""WebDataset tar shards, read as a stream with :mod:`tarfile` (no ``webdataset`` package).

A shard holds samples as consecutive members sharing a key: ``dir/000123.jpg`` and
``dir/000123.txt`` form the sample with key ``dir/000123``.
"""

from __future__ import annotations

import json
import logging
import tarfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mmgpt.datasets.readers.base import OnError, Reader, located
from mmgpt.datasets.readers.captions import AUDIO_PROMPT, IMAGE_PROMPT, caption_samples, clean_caption
from mmgpt.datasets.readers.jsonl import NATIVE_KEYS, parse_native
from mmgpt.datasets.schema import MEDIA_TYPES, Sample, Segment
from mmgpt.errors import DataError

logger = logging.getLogger("mmgpt.datasets.readers")

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
AUDIO_EXTS = ("wav", "flac", "mp3", "ogg")
TEXT_EXTS = ("txt", "cap")
CAPTION_FIELDS = ("caption", "text")
COMPRESSED = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
# A member larger than this is a bad key, refused from its header before a byte of it is read
# (a small compressed shard can declare members of gigabytes: a tar bomb).
MAX_MEMBER_BYTES = 256 * 2**20
# Compressed shards read into memory whole (val, eval) hold at most this many member bytes.
MAX_IN_MEMORY_BYTES = 2 * 2**30


class TooBig(bytes):
    """Stands in for a member over :data:`MAX_MEMBER_BYTES` (its declared size); never read."""

    def __new__(cls, size: int) -> TooBig:
        obj = super().__new__(cls, b"")
        obj.size = size
        return obj


def split_member_name(name: str) -> tuple[str, str]:
    """``"dir/key.ext"`` -> ``("dir/key", "ext")``: the key ends at the basename's first dot.

    The extension is lower-cased and may itself contain dots (``"a/k.0.jpg"`` -> ``"0.jpg"``).
    """
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def media_kind(ext: str) -> str | None:
    """``"image"``, ``"audio"`` or None, from the extension's last part (``"0.jpg"`` -> image)."""
    last = ext.rsplit(".", 1)[-1]
    return "image" if last in IMAGE_EXTS else "audio" if last in AUDIO_EXTS else None


MAX_HEADER_BYTES = 1 << 20  # GNU long names and pax records, which tarfile reads whole


class CappedTarInfo(tarfile.TarInfo):
    """A tar header that refuses a long-name or pax record over :data:`MAX_HEADER_BYTES` before
    tarfile reads it into memory (a small compressed shard could declare gigabytes)."""

    def _proc_member(self, tarfile_):
        if self.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                         tarfile.SOLARIS_XHDTYPE) and self.size > MAX_HEADER_BYTES:
            raise tarfile.ReadError(f"a {self.size:,}-byte name or pax header, over the {MAX_HEADER_BYTES:,}-byte cap")
        return super()._proc_member(tarfile_)


def iter_groups(tar: tarfile.TarFile) -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    """Group a streamed tar's regular files into ``(key, [(ext, data), ...])``, in tar order.

    Raises:
        tarfile.ReadError: the tar is truncated or garbled (its last key is then not yielded).
    """
    key, members = None, []
    for info in tar:
        if not info.isfile():
            continue
        member_key, ext = split_member_name(info.name)
        if member_key != key and members:
            yield key, members
            members = []
        key = member_key
        if info.size > MAX_MEMBER_BYTES:
            members.append((ext, TooBig(info.size)))  # the stream skips its data unread
            continue
        f = tar.extractfile(info)
        members.append((ext, f.read() if f is not None else b""))
    # tarfile ends quietly when the stream stops between members or meets a garbled header. A
    # whole tar ends with two zero blocks and tarfile has read the first, so check the second
    # before trusting the last key, which may have lost members.
    if tar.fileobj.read(tarfile.BLOCKSIZE) != tarfile.NUL * tarfile.BLOCKSIZE:
        raise tarfile.ReadError(f"truncated or garbled after key {key!r} (no end-of-archive marker)")
    if members:
        yield key, members


def _decode(data: bytes, ext: str) -> str:
    """A text member as a string."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f".{ext} is not UTF-8 ({e.reason} at byte {e.start})") from None


def _fill_media_refs(row: dict) -> dict:
    """Give every media part without a payload its kind as payload (``{"type": "image"}``)."""

    def fill(content: Any) -> Any:
        if not isinstance(content, list):
            return content
        return [
            {**p, p["type"]: p["type"]}
            if isinstance(p, dict) and p.get("type") in MEDIA_TYPES
            and all(p.get(k) is None for k in (p["type"], "path", "url"))
            else p
            for p in content
        ]

    row = dict(row)
    if isinstance(row.get("messages"), list):
        row["messages"] = [
            {**m, "content": fill(m["content"])} if isinstance(m, dict) and "content" in m else m
            for m in row["messages"]
        ]
    if "document" in row:
        row["document"] = fill(row["document"])
    return row


def _media_resolver(media: dict[str, tuple[str, bytes]], used: set[str]) -> Callable[[Segment], bytes]:
    """Map a native part's payload (an extension, or its kind) to the key's member bytes."""

    def resolve(seg: Segment) -> bytes:
        ref = seg.media
        if not isinstance(ref, str):
            raise DataError(f"{seg.type} part must name a member extension, got {type(ref).__name__}")
        if ref == seg.type:  # "image" / "audio": the key's only member of that kind
            found = [ext for ext, (kind, _) in media.items() if kind == seg.type]
            if len(found) != 1:
                raise DataError(f"{seg.type} part {ref!r} needs exactly one {seg.type} member, found {len(found)}")
            ref = found[0]
        ext = ref.lower().lstrip(".")
        if ext not in media or media[ext][0] != seg.type:
            raise DataError(f"{seg.type} part refers to .{ext}, which is not an {seg.type} member of this key")
        used.add(ext)
        return media[ext][1]

    return resolve


def _sort_members(
    members: list[tuple[str, bytes]], ignored: set[str]
) -> tuple[dict[str, tuple[str, bytes]], dict[str, str], Any]:
    """Sort one key's members into media ``{ext: (kind, bytes)}``, texts ``{ext: str}`` and
    the decoded ``.json`` (None if absent); unsupported extensions are added to ``ignored``."""
    media: dict[str, tuple[str, bytes]] = {}
    texts: dict[str, str] = {}
    row: Any = None
    seen: set[str] = set()
    for ext, data in members:
        if isinstance(data, TooBig):
            raise DataError(f".{ext} member is {data.size:,} bytes, over the {MAX_MEMBER_BYTES:,}-byte cap")
        if ext in seen:
            raise DataError(f"two members with extension .{ext}")
        seen.add(ext)
        kind = media_kind(ext)
        if kind is not None:
            media[ext] = (kind, data)
        elif ext in TEXT_EXTS:
            texts[ext] = _decode(data, ext)
        elif ext == "json":
            try:
                row = json.loads(_decode(data, ext))
            except json.JSONDecodeError as e:
                raise DataError(f".json is not valid JSON ({e})") from None
        else:
            ignored.add(ext)
    return media, texts, row


class WebDatasetReader(Reader):
    """Iterable over the samples of WebDataset tar shards; see :func:`read_webdataset`."""

    def __init__(
        self, path_or_glob: str | Path, *, image_prompt: str = IMAGE_PROMPT, audio_prompt: str = AUDIO_PROMPT,
        on_error: OnError = "raise", media_folder: str | Path | None = None, allow_outside_media_folder: bool = False,
    ) -> None:
        # Media are members of the shard itself: a media folder has nothing to resolve here.
        super().__init__(path_or_glob, on_error=on_error, media_folder=media_folder,
                         allow_outside_media_folder=allow_outside_media_folder)
        self.prompts = {"image": image_prompt, "audio": audio_prompt}

    def _read_file(self, path: Path) -> Iterator[Sample | DataError]:
        ignored: set[str] = set()
        try:
            with tarfile.open(path, mode="r|*", tarinfo=CappedTarInfo) as tar:
                for key, members in iter_groups(tar):
                    where = f"{path}:{key}"
                    try:
                        yield self._group_sample(path, key, members, ignored)
                    except DataError as e:
                        yield located(where, e)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            yield DataError(f"{path}: unreadable tar shard, rest of the shard not read ({e})")
        if ignored:
            logger.warning("%s: ignored members with unsupported extensions: %s", path, sorted(ignored))

    def read_shard(self, shard: Path) -> Iterator[Sample | DataError]:
        """The samples of one shard in tar order, a bad key as its :class:`DataError` (whatever
        the error policy: the caller decides), the shard read as a stream, never held whole."""
        return self._read_file(shard)

    @property
    def compressed(self) -> bool:
        """Whether any shard is compressed (``.tar.gz``, ``.tgz``, ``.tar.bz2``, ``.tar.xz``)."""
        return any(p.name.lower().endswith(COMPRESSED) for p in self.paths)

    def index(self, tasks: set[str] | None = None):
        """Random access to the keys of plain ``.tar`` shards from their headers alone (members
        are read when a key is drawn); compressed shards cannot be read out of order, so they
        are read once into memory (with a warning: training streams them instead,
        :class:`mmgpt.datasets.readers.stream.ShardStream`)."""
        from mmgpt.datasets.readers.index import Subset, TarIndex

        if self.compressed:
            logger.warning("compressed tar shards are read into memory; plain .tar shards are read as drawn")
            samples = []
            held = 0
            for sample in self:
                if tasks is not None and sample.meta.get("task") not in tasks:
                    continue
                held += sum(len(seg.media) for _, seg in sample.segments if isinstance(seg.media, bytes))
                if held > MAX_IN_MEMORY_BYTES:
                    raise DataError(f"{self.paths[0]}...: compressed shards hold over {MAX_IN_MEMORY_BYTES:,} bytes "
                                    "of media; train on them streamed (data.streaming) or use plain .tar shards")
                samples.append(sample)
            return samples
        ignored: set[str] = set()

        def build(shard: Path, key: str, members: list[tuple[str, bytes]]) -> Sample:
            try:
                return self._group_sample(shard, key, members, ignored)
            except DataError as e:
                raise located(f"{shard}:{key}", e) from None

        index = TarIndex(self.paths, split_member_name, build, TooBig, MAX_MEMBER_BYTES)
        if tasks is None:
            return index
        keep = []
        for i in range(len(index)):
            try:
                if index[i].meta.get("task") in tasks:
                    keep.append(i)
            except DataError as e:
                if self.on_error == "raise":
                    raise
                self.stats.record(e)
        return Subset(index, keep)

    def _group_sample(
        self, shard: Path, key: str, members: list[tuple[str, bytes]], ignored: set[str]
    ) -> Sample:
        """Build the sample of one key (see :func:`read_webdataset` for the rules)."""
        where = f"{shard}:{key}"
        media, texts, row = _sort_members(members, ignored)
        meta: dict[str, Any] = {"key": key, "shard": str(shard)}

        if isinstance(row, dict) and any(k in row for k in NATIVE_KEYS):
            used: set[str] = set()
            sample = parse_native(_fill_media_refs(row), where, _media_resolver(media, used))
            if set(media) - used:
                raise DataError(f"media members {sorted(set(media) - used)} are not used by the .json sample")
            sample.meta = {**meta, **texts, **sample.meta}
            return sample

        if row is not None and not isinstance(row, dict):
            raise DataError(f".json must hold an object, got {type(row).__name__}")
        row = row or {}
        if len(texts) > 1:
            raise DataError("has both .txt and .cap; keep one caption member")
        if texts:
            caption = clean_caption(next(iter(texts.values())), f".{next(iter(texts))} caption")
        elif any(k in row for k in CAPTION_FIELDS):
            field = next(k for k in CAPTION_FIELDS if k in row)
            caption = clean_caption(row[field], f".json {field!r}")
        else:
            caption = None
        meta.update({k: v for k, v in row.items() if k not in CAPTION_FIELDS and k not in meta})

        kinds = {kind for kind, _ in media.values()}
        if not media:
            if caption is None:
                found = ", ".join("." + ext for ext, _ in members)
                raise DataError(f"no supported member (found {found})")
            return Sample.from_document(caption, meta, where)
        if caption is None:
            raise DataError(
                f"has media ({', '.join('.' + e for e in media)}) but no text (.txt, .cap or .json caption)"
            )
        if len(kinds) > 1:
            raise DataError("has both image and audio members; add a .json chat to say where each goes")
        (kind,) = kinds
        payloads = [data for _, data in media.values()]
        (sample,) = caption_samples(kind, payloads, self.prompts[kind], [caption], "each", meta, where)
        del sample.meta["caption_index"]  # always 0: one caption per key
        return sample


def read_webdataset(
    path_or_glob: str | Path, *, image_prompt: str = IMAGE_PROMPT, audio_prompt: str = AUDIO_PROMPT,
    on_error: OnError = "raise",
) -> WebDatasetReader:
    """Read WebDataset tar shards as a stream (``tarfile.open(path, "r|*")``, any compression).

    Grouping: regular members are grouped by key, consecutive members sharing one key (the
    WebDataset convention). The key is the member path up to the first dot of its basename,
    the extension everything after it, lower-cased: ``dir/k.0.jpg`` -> key ``dir/k``,
    extension ``0.jpg``. Two members of one key with the same extension are a bad key.

    Members, by extension (for media, by its last part, so ``0.jpg`` is an image):

    * ``jpg``, ``jpeg``, ``png``, ``webp``: an image; ``wav``, ``flac``, ``mp3``, ``ogg``:
      an audio clip. The media is the member's raw ``bytes`` (decoded elsewhere).
    * ``txt``, ``cap``: the caption (UTF-8, stripped); a key may have only one of them.
    * ``json``: either a native sample (an object with ``messages`` or ``document``, as in
      :func:`read_jsonl`) or a metadata object.
    * Anything else is ignored, with one warning per shard listing the extensions.

    Samples:

    1. A native ``.json``: its media parts name a member by extension
       (``{"type": "image", "image": "jpg"}``), or by kind (``"image": "image"`` or no payload,
       ``{"type": "image"}``), which picks the key's only member of that kind. Every media
       member must be used. ``.txt`` / ``.cap`` text goes to ``meta`` under its extension.
    2. Otherwise, with media: a caption chat ``user: [media..., prompt]``,
       ``assistant: caption``, the media in tar order, the prompt ``image_prompt`` or
       ``audio_prompt``. The caption is the ``.txt`` / ``.cap`` text, else the ``.json``
       object's ``"caption"``, else its ``"text"``. A key with media but no caption, or with
       both images and audio, is a bad key.
    3. Otherwise, a key with only a caption text becomes a text-only document sample.

    ``source`` is ``"<shard>:<key>"``; ``meta`` has ``key``, ``shard`` and, in cases 2 and 3,
    every other field of a metadata ``.json`` (its url, size, ids...).

    Args:
        path_or_glob: a tar shard or a glob of shards (read in sorted order).
        image_prompt: the user's instruction after an image in caption chats.
        audio_prompt: the user's instruction after an audio clip in caption chats.
        on_error: ``"raise"`` on the first bad key, or ``"skip"`` it and count it. A shard
            that cannot be read further counts as one bad row: corrupt data, or a truncated
            shard (no end-of-archive marker; its last key, perhaps incomplete, is not yielded).

    Returns:
        A :class:`WebDatasetReader`; iterate it for the samples.

    Raises:
        DataError: the path or glob names no file (at once); while iterating, with
            ``on_error="raise"``, a bad key (named as ``"<shard>:<key>"``) or an unreadable shard.
    """
    return WebDatasetReader(path_or_glob, image_prompt=image_prompt, audio_prompt=audio_prompt, on_error=on_error)
