"""Media folders: every reader resolves rows' paths against one, and refuses paths that leave it."""

from __future__ import annotations

import json

import pytest

from mmgpt.datasets.readers import (
    find_datasets,
    read_audio_captions,
    read_coco_captions,
    read_jsonl,
    read_llava,
    read_samples,
)
from mmgpt.datasets.shapestones import write_clotho, write_coco
from mmgpt.errors import DataError
from tests.datasets.reader_fixtures import png_bytes, write, write_jsonl


def chat_row(path: str) -> dict:
    return {"messages": [{"role": "user", "content": [{"type": "image", "image": path}]},
                         {"role": "assistant", "content": "red"}]}


@pytest.fixture
def layout(tmp_path):
    """data/rows.jsonl beside media/a.png, and a secret file outside both."""
    write(tmp_path / "media" / "a.png", png_bytes())
    write(tmp_path / "secret.png", png_bytes())
    rows = write_jsonl(tmp_path / "data" / "rows.jsonl",
                       [chat_row("a.png"), chat_row("../secret.png"), chat_row(str(tmp_path / "secret.png")),
                        chat_row("sub/../a.png")])
    return tmp_path, rows


def first_media(sample):
    return next(sample.media()).media


def test_jsonl_paths_resolve_in_the_media_folder_and_may_not_leave_it(layout):
    root, rows = layout
    media = root / "media"
    reader = read_jsonl(rows, media_folder=media, on_error="skip")
    got = [first_media(s) for s in reader]
    assert got == [media / "a.png", media / "sub/../a.png"]  # `sub/..` stays inside
    assert reader.skipped == 2
    assert f"{rows}:2: " in reader.errors[0] and "'../secret.png' is outside the media folder" in reader.errors[0]
    assert f"{rows}:3: " in reader.errors[1] and "allow_outside_media_folder" in reader.errors[1]
    with pytest.raises(DataError, match=r"rows\.jsonl:2: media path '\.\./secret\.png' is outside"):
        list(read_jsonl(rows, media_folder=media))
    allowed = [first_media(s) for s in read_jsonl(rows, media_folder=media, allow_outside_media_folder=True)]
    assert allowed[1] == media / "../secret.png" and allowed[2] == root / "secret.png"


def test_without_a_media_folder_paths_resolve_as_before(layout):
    root, rows = layout
    got = [first_media(s) for s in read_jsonl(rows)]
    assert got[0] == root / "data" / "a.png" and got[1] == root / "data" / "../secret.png"
    assert got[2] == root / "secret.png"  # absolute paths are kept


def test_a_missing_media_folder_is_an_error_at_once(layout):
    root, rows = layout
    with pytest.raises(DataError, match=r"media folder .*nowhere is not a folder"):
        read_jsonl(rows, media_folder=root / "nowhere")


def test_llava_coco_and_clotho_readers_confine_to_the_media_folder(tmp_path):
    media = tmp_path / "media"
    write(media / "a.png", png_bytes())
    llava = write(tmp_path / "l.json", json.dumps([
        {"id": 1, "image": "a.png", "conversations": [{"from": "human", "value": "<image>Hi"},
                                                      {"from": "gpt", "value": "red"}]},
        {"id": 2, "image": "/etc/passwd", "conversations": [{"from": "human", "value": "<image>Hi"},
                                                            {"from": "gpt", "value": "x"}]}]))
    reader = read_llava(llava, media_folder=media, on_error="skip")
    assert [first_media(s) for s in reader] == [media / "a.png"] and "'/etc/passwd' is outside" in reader.errors[0]
    coco = write(tmp_path / "c.json", json.dumps({
        "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "../b.png"}],
        "annotations": [{"id": 1, "image_id": 1, "caption": "red"}, {"id": 2, "image_id": 2, "caption": "x"}]}))
    reader = read_coco_captions(coco, media, on_error="skip")
    samples = list(reader)
    assert [first_media(s) for s in samples] == [media / "a.png"] and samples[0].meta["file_name"] == "a.png"
    assert reader.skipped == 2  # the image entry, and its annotation (its image is not in 'images' now)
    assert "c.json:images[1]" in reader.errors[0] and "outside the media folder" in reader.errors[0]
    clotho = write(tmp_path / "c.csv", "file_name,caption_1\na.wav,a beep\n../../x.wav,bad\n")
    reader = read_audio_captions(clotho, media, on_error="skip")
    assert [first_media(s) for s in reader] == [media / "a.wav"] and "c.csv:3" in reader.errors[0]


def test_shapestones_in_coco_and_clotho_layouts_read_with_their_media_folders(tmp_path):
    coco = write_coco(tmp_path / "coco", {"train": 6, "val": 2}, progress=False)
    clotho = write_clotho(tmp_path / "clotho", {"development": 4}, progress=False)
    train = list(read_samples(coco["train"]["annotations"], media_folder=coco["train"]["media_folder"]))
    assert len(train) == 6 and all(first_media(s).is_file() for s in train)
    assert all(first_media(s).parent == tmp_path / "coco" / "train" for s in train)
    caption = train[0].turns[1].segments[0].text
    assert caption.endswith(".") and ("shape" in caption)
    clips = list(read_samples(clotho["development"]["captions"], media_folder=clotho["development"]["media_folder"]))
    assert len(clips) == 4 * 5 and all(first_media(s).is_file() for s in clips)  # five caption columns each
    assert clips[0].turns[1].segments[0].text.endswith(("beep.", "beeps."))
    write_coco(tmp_path / "coco2", {"train": 6}, progress=False)
    assert (tmp_path / "coco" / "annotations" / "captions_train.json").read_bytes() == \
        (tmp_path / "coco2" / "annotations" / "captions_train.json").read_bytes()
    found = find_datasets(tmp_path / "coco" / "annotations")
    assert [(p.name, f) for p, f, _ in found] == [("captions_train.json", "coco"), ("captions_val.json", "coco")]
