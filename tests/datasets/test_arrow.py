"""Parquet files and ``datasets`` folders, built here with ``datasets`` / pyarrow, read as samples."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmgpt.datasets.readers import detect_format, find_datasets, read_samples
from mmgpt.errors import DataError
from tests.datasets.reader_fixtures import png_bytes, wav_bytes

ROOT = Path(__file__).resolve().parents[2]


def _hugging_face_datasets():
    """Hugging Face's ``datasets``: the tests run from the checkout, whose own ``datasets/`` folder
    (installed as ``mmgpt.datasets``) would otherwise be what a bare ``import datasets`` finds."""
    saved = sys.path[:]
    sys.modules.pop("datasets", None)
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT]
    try:
        return importlib.import_module("datasets")
    except ImportError:
        pytest.skip("Hugging Face datasets is not installed", allow_module_level=True)
    finally:
        sys.path[:] = saved


datasets = _hugging_face_datasets()

IMG = datasets.Image()


def image_dataset(rows: dict, features: dict):
    return datasets.Dataset.from_dict(rows, features=datasets.Features(features))


def first_media(sample):
    return next(sample.media()).media


def test_caption_parquet_and_save_to_disk_folder_read_the_same(tmp_path):
    ds = image_dataset({"image": [{"bytes": png_bytes(), "path": None}, {"bytes": png_bytes((0, 0, 255)), "path": None}],
                        "caption": ["a red square.", "a blue square."], "id": [7, 8]},
                       {"image": IMG, "caption": datasets.Value("string"), "id": datasets.Value("int64")})
    ds.to_parquet(tmp_path / "caps.parquet")
    ds.save_to_disk(tmp_path / "caps_hf")
    assert detect_format(tmp_path / "caps.parquet") == detect_format(tmp_path / "caps_hf") == "arrow"
    from_parquet = list(read_samples(tmp_path / "caps.parquet"))
    from_folder = list(read_samples(tmp_path / "caps_hf"))
    assert [s.turns for s in from_parquet] == [s.turns for s in from_folder]
    s = from_parquet[1]
    assert first_media(s) == png_bytes((0, 0, 255)) and s.turns[1].segments[0].text == "a blue square."
    assert s.meta == {"id": 8} and s.source == f"{tmp_path / 'caps.parquet'}:1"
    index = read_samples(tmp_path / "caps_hf").index()
    assert len(index) == 2 and index[1].turns == s.turns
    assert [p.name for p, f, _ in find_datasets(tmp_path)] == ["caps.parquet", "caps_hf"]


def test_the_cauldron_layout_and_a_list_of_captions(tmp_path):
    texts = [{"user": "What colour?", "assistant": "Red.", "source": "x"},
             {"user": "And the shape?", "assistant": "A square.", "source": "x"}]
    image_dataset({"images": [[{"bytes": png_bytes(), "path": None}]], "texts": [texts]},
                  {"images": datasets.Sequence(IMG),
                   "texts": [{"user": datasets.Value("string"), "assistant": datasets.Value("string"),
                              "source": datasets.Value("string")}]}).to_parquet(tmp_path / "cauldron.parquet")
    (chat,) = read_samples(tmp_path / "cauldron.parquet")
    assert [t.role for t in chat.turns] == ["user", "assistant", "user", "assistant"]
    assert [s.type for s in chat.turns[0].segments] == ["image", "text"] and chat.turns[3].segments[0].text == "A square."
    image_dataset({"image": [{"bytes": png_bytes(), "path": None}], "captions": [["one.", "two.", "three."]]},
                  {"image": IMG, "captions": datasets.Sequence(datasets.Value("string"))}).to_parquet(tmp_path / "m.parquet")
    samples = list(read_samples(tmp_path / "m.parquet"))
    assert [s.turns[1].segments[0].text for s in samples] == ["one.", "two.", "three."]
    assert samples[2].source.endswith("m.parquet:0#2")


def test_llava_conversations_and_native_messages_columns(tmp_path):
    conv = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A square."}]
    image_dataset({"image": [{"bytes": png_bytes(), "path": None}], "conversations": [conv], "id": ["a"]},
                  {"image": IMG, "id": datasets.Value("string"),
                   "conversations": [{"from": datasets.Value("string"), "value": datasets.Value("string")}]}
                  ).to_parquet(tmp_path / "llava.parquet")
    (s,) = read_samples(tmp_path / "llava.parquet")
    assert [seg.type for seg in s.turns[0].segments] == ["image", "text"] and s.meta["id"] == "a"
    # native messages with audio, written with pyarrow (an audio struct of bytes and path)
    messages = json.dumps([{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": "How many?"}]},
                           {"role": "assistant", "content": [{"type": "text", "text": "Two."}]}])
    table = pa.table({"audio": [{"bytes": wav_bytes(), "path": None}], "messages": [json.loads(messages)]})
    table = table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": {"audio": {"_type": "Audio"}}}})})
    pq.write_table(table, tmp_path / "native.parquet")
    (n,) = read_samples(tmp_path / "native.parquet")
    assert first_media(n) == wav_bytes() and n.turns[1].segments[0].text == "Two."


def test_stored_paths_resolve_in_the_media_folder_and_bad_rows_name_themselves(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    (media / "a.png").write_bytes(png_bytes())
    table = pa.table({"image": [{"bytes": None, "path": "a.png"}, {"bytes": None, "path": "../x.png"}],
                      "caption": ["red.", "out."]})  # paths stored, no bytes (datasets' Image(decode=False) layout)
    features = {"image": {"_type": "Image"}, "caption": {"dtype": "string", "_type": "Value"}}
    pq.write_table(table.replace_schema_metadata({"huggingface": json.dumps({"info": {"features": features}})}),
                   tmp_path / "paths.parquet")
    reader = read_samples(tmp_path / "paths.parquet", media_folder=media, on_error="skip")
    assert [first_media(s) for s in reader] == [media / "a.png"]
    assert "paths.parquet:1" in reader.errors[0] and "outside the media folder" in reader.errors[0]
    pq.write_table(pa.table({"foo": [1]}), tmp_path / "odd.parquet")
    with pytest.raises(DataError, match=r"odd\.parquet:0: no layout fits the columns \['foo'\]"):
        list(read_samples(tmp_path / "odd.parquet"))


def test_trains_two_steps_on_a_parquet_file(tmp_path):
    from mmgpt.train import TrainConfig, train
    from tests.mmgpt.train.conftest import TINY

    image_dataset({"image": [{"bytes": png_bytes((40 * i % 255, 0, 0)), "path": None} for i in range(8)],
                   "caption": [f"shade {i}." for i in range(8)]}, {"image": IMG, "caption": datasets.Value("string")}
                  ).to_parquet(tmp_path / "train.parquet")
    cfg = TrainConfig.from_yaml("stage3_instruct", [
        f"data.train={tmp_path / 'train.parquet'}", "data.val=null", "data.tasks=null", "init_from=null",
        f"model={TINY}", f"out_dir={tmp_path}", "batch_size=4", "max_steps=2", "progress=false", "precision=fp32"])
    final = train(cfg)
    assert (final / "model.safetensors").is_file()
    assert json.loads((cfg.run_dir / "summary.json").read_text())["steps"] == 2
