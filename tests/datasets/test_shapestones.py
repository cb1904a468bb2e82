"""ShapesTones: determinism, ground truth recovered from the media, canonical text, splits."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from mmgpt.datasets.schema import Sample
from mmgpt.datasets.shapestones import (
    COLOURS,
    HELD_OUT_SHAPES,
    HELD_OUT_TONES,
    SAMPLE_RATE,
    VOCAB,
    audio_caption,
    crossmodal_answer,
    generate,
    image_caption,
    render_audio,
    render_image,
    resolve_mix,
    sample_audio_scene,
    sample_image_scene,
    sample_scene,
)
from mmgpt.errors import ConfigError

SIZES = {"train": 240, "val": 40, "test": 40, "gen": 80}
PITCH_HZ = {"low": 261.63, "mid": 523.25, "high": 1046.5}


def _generate(out: Path, seed: int) -> dict:
    return generate(out, **SIZES, seed=seed, progress=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapestones")
    _generate(out, seed=3)
    return out


def _records(root: Path, split: str) -> list[dict]:
    return [json.loads(line) for line in (root / f"{split}.jsonl").read_text().splitlines()]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- analysers: recompute ground truth from pixels and samples ------------------------------
def analyse_image(img: Image.Image) -> list[dict]:
    """Per occupied cell: nearest palette colour of the median shape pixel, and size by area."""
    arr = np.asarray(img).astype(int)
    half = arr.shape[0] // 2
    large_area = 210 * (arr.shape[0] / 64) ** 2  # between the largest small and smallest large shape
    found = []
    for cell, position in enumerate(VOCAB["position"]):
        r, c = divmod(cell, 2)
        region = arr[r * half : (r + 1) * half, c * half : (c + 1) * half]  # (h, w, 3)
        mask = np.abs(region - 35).max(-1) > 60
        if mask.sum() < 20:
            continue
        median = np.median(region[mask], axis=0)
        colour = min(COLOURS, key=lambda k: np.sum((np.array(COLOURS[k]) - median) ** 2))
        found.append({"position": position, "colour": colour, "size": "large" if mask.sum() > large_area else "small"})
    return found


def _band_energy(spec: np.ndarray, freqs: np.ndarray, f: float) -> float:
    return float(np.sum(spec[np.abs(freqs - f) < 15.0] ** 2))


def analyse_audio(x: np.ndarray) -> dict:
    """Beeps by onsets of a 5 ms RMS envelope; pitch by FFT peak; waveform by harmonics 2 and 3."""
    hop = SAMPLE_RATE // 200
    rms = np.sqrt(np.mean(x[: len(x) // hop * hop].reshape(-1, hop) ** 2, axis=1))  # (frames,)
    active = np.concatenate([[False], rms > 0.3 * rms.max(), [False]])
    starts = np.flatnonzero(~active[:-1] & active[1:])
    ends = np.flatnonzero(active[:-1] & ~active[1:])
    seg = x[starts[0] * hop : ends[0] * hop]
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), n=1 << 16))
    freqs = np.fft.rfftfreq(1 << 16, 1 / SAMPLE_RATE)
    f0 = freqs[np.argmax(spec)]
    e1, e2, e3 = (_band_energy(spec, freqs, k * f0) for k in (1, 2, 3))
    if e3 / e1 < 0.02:
        waveform = "sine"
    else:
        waveform = "square" if e2 / e1 < 0.05 else "sawtooth"
    length = float(np.mean(ends - starts)) * hop / SAMPLE_RATE
    return {
        "beeps": len(starts),
        "pitch": min(PITCH_HZ, key=lambda k: abs(np.log2(f0 / PITCH_HZ[k]))),
        "pitch_error_octaves": min(abs(np.log2(f0 / hz)) for hz in PITCH_HZ.values()),
        "waveform": waveform,
        "duration": "long" if length > 0.23 else "short",
        "loudness": "loud" if np.abs(x).max() > 0.3 else "quiet",
    }


# --- determinism ---------------------------------------------------------------------------
def test_same_seed_gives_identical_bytes_and_other_seed_differs(dataset, tmp_path):
    again = _generate(tmp_path / "a", seed=3)
    assert again["splits"]["train"]["samples"] == SIZES["train"]
    assert _files(tmp_path / "a") == _files(dataset)
    _generate(tmp_path / "b", seed=4)
    other = _files(tmp_path / "b")
    assert other["train.jsonl"] != _files(dataset)["train.jsonl"]
    assert other["media/train/000000.wav"] != _files(dataset)["media/train/000000.wav"]


def test_line_counts_tasks_and_media_layout(dataset):
    for split, n in SIZES.items():
        records = _records(dataset, split)
        assert len(records) == n
        assert {r["meta"]["split"] for r in records} == {split}
    tasks = Counter(r["meta"]["task"] for r in _records(dataset, "train"))
    assert set(tasks) == {"image_caption", "audio_caption", "image_qa", "audio_qa", "crossmodal_qa", "chat", "document"}
    assert tasks["image_qa"] > tasks["image_caption"]
    img = Image.open(dataset / "media/train/000000.png")
    assert img.size == (64, 64) and img.mode == "RGB"
    info = sf.info(str(dataset / "media/train/000000.wav"))
    assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
    assert 0.5 <= info.duration <= 3.0


# --- ground truth agrees with the media ----------------------------------------------------
def test_images_on_disk_match_labels(dataset):
    seen = {}
    for split in ("train", "gen"):
        for r in _records(dataset, split):
            if r["meta"]["task"] in ("image_caption", "image_qa"):
                seen[(split, r["meta"]["scene"])] = (r["messages"][0]["content"][0]["image"], r["meta"]["image"])
    assert len(seen) >= 30
    for path, objects in seen.values():
        found = analyse_image(Image.open(dataset / path))
        assert found == [{k: o[k] for k in ("position", "colour", "size")} for o in objects], path


def test_rendered_images_match_labels_all_shapes_and_sizes():
    for i in range(80):
        rng = np.random.default_rng(i)
        objects = sample_image_scene(rng, held_out="allow")["objects"]
        found = analyse_image(render_image(objects, rng, 64, True))
        assert len(found) == len(objects)
        assert found == [{k: o[k] for k in ("position", "colour", "size")} for o in objects]
    small = render_image([{"shape": "star", "colour": "red", "size": "large", "position": "top left"}],
                         np.random.default_rng(0), 32, False)
    assert small.size == (32, 32)


def test_audio_on_disk_matches_labels(dataset):
    clips = {}
    for split in ("train", "gen"):
        for r in _records(dataset, split):
            if r["meta"]["task"] in ("audio_caption", "audio_qa"):
                clips[(split, r["meta"]["scene"])] = (r["messages"][0]["content"][0]["audio"], r["meta"]["audio"])
    assert len(clips) >= 30
    for path, truth in clips.values():
        x, sr = sf.read(str(dataset / path), dtype="float32")
        assert sr == SAMPLE_RATE
        got = analyse_audio(x)
        assert got["pitch_error_octaves"] < 0.05, path
        assert {k: got[k] for k in truth} == truth, path


def test_rendered_audio_covers_every_tone():
    for i, (pitch, waveform) in enumerate((p, w) for p in PITCH_HZ for w in VOCAB["waveform"]):
        for duration in ("short", "long"):
            for loudness in ("quiet", "loud"):
                rng = np.random.default_rng(i)
                truth = {"pitch": pitch, "waveform": waveform, "beeps": 1 + i % 4,
                         "duration": duration, "loudness": loudness}
                x = render_audio(truth, rng, noise=True)
                assert x.dtype == np.float32 and 0.5 * SAMPLE_RATE <= len(x) <= 3 * SAMPLE_RATE
                got = analyse_audio(x)
                assert {k: got[k] for k in truth} == truth


# --- canonical text ------------------------------------------------------------------------
def test_image_caption_format():
    one = [{"shape": "square", "colour": "green", "size": "small", "position": "bottom left"}]
    assert image_caption(one) == "one shape: a small green square at the bottom left."
    two = [
        {"shape": "circle", "colour": "red", "size": "large", "position": "top left"},
        {"shape": "star", "colour": "blue", "size": "small", "position": "bottom right"},
    ]
    assert image_caption(two) == "two shapes: a large red circle at the top left and a small blue star at the bottom right."
    four = [
        {"shape": "circle", "colour": "red", "size": "large", "position": "top left"},
        {"shape": "triangle", "colour": "white", "size": "small", "position": "top right"},
        {"shape": "square", "colour": "yellow", "size": "large", "position": "bottom left"},
        {"shape": "star", "colour": "blue", "size": "small", "position": "bottom right"},
    ]
    assert image_caption(four) == (
        "four shapes: a large red circle at the top left, a small white triangle at the top right, "
        "a large yellow square at the bottom left and a small blue star at the bottom right."
    )


def test_audio_caption_format():
    assert audio_caption({"pitch": "high", "waveform": "square", "beeps": 3, "duration": "short",
                          "loudness": "loud"}) == "three short loud high square beeps."
    assert audio_caption({"pitch": "low", "waveform": "sine", "beeps": 1, "duration": "long",
                          "loudness": "quiet"}) == "one long quiet low sine beep."


def test_answers_are_canonical_and_in_vocab(dataset):
    for r in _records(dataset, "train") + _records(dataset, "gen"):
        meta = r["meta"]
        if "messages" in r:
            replies = [m["content"][0]["text"] for m in r["messages"] if m["role"] == "assistant"]
            assert replies == meta.get("answers", [meta.get("answer")])
        if meta["task"] == "image_caption":
            assert meta["answer"] == image_caption(meta["image"])
        elif meta["task"] == "audio_caption":
            assert meta["answer"] == audio_caption(meta["audio"])
        elif meta["task"] in ("image_qa", "audio_qa", "crossmodal_qa"):
            assert meta["answer"] in VOCAB[meta["attribute"]]
        if meta["task"] == "crossmodal_qa":
            assert meta["answer"] == crossmodal_answer(meta["image"], meta["audio"], meta["kind"], meta.get("colour"))
        if meta["task"] == "chat":
            assert all(a in VOCAB[t] for a, t in zip(meta["answers"], meta["attributes"]))
            assert 2 <= len(meta["answers"]) <= 4


# --- splits --------------------------------------------------------------------------------
def _truths(meta: dict) -> tuple[list[list[dict]], list[dict]]:
    if meta["task"] == "document":
        return meta["image"], meta["audio"]
    return ([meta["image"]] if "image" in meta else []), ([meta["audio"]] if "audio" in meta else [])


def test_gen_split_holds_the_held_out_combinations(dataset):
    held_shapes = {tuple(p) for p in HELD_OUT_SHAPES}
    held_tones = {tuple(t) for t in HELD_OUT_TONES}
    for split in ("train", "val", "test", "gen"):
        images, clips = [], []
        for r in _records(dataset, split):
            i, a = _truths(r["meta"])
            images += i
            clips += a
        pairs = [{(o["colour"], o["shape"]) for o in objects} for objects in images]
        tones = [(c["pitch"], c["waveform"]) for c in clips]
        assert images and clips
        if split == "gen":
            assert all(p & held_shapes for p in pairs)
            assert all(t in held_tones for t in tones)
        else:
            assert not any(p & held_shapes for p in pairs)
            assert not any(t in held_tones for t in tones)


def test_lines_read_back_through_the_schema(dataset):
    for split in SIZES:
        for n, r in enumerate(_records(dataset, split)):
            source = f"{split}.jsonl:{n + 1}"
            if "messages" in r:
                sample = Sample.from_messages(r["messages"], r["meta"], source, base_dir=dataset)
                assert sample.is_chat and sample.turns[-1].role == "assistant"
            else:
                sample = Sample.from_document(r["document"], r["meta"], source, base_dir=dataset)
                kinds = [seg.type for seg in sample.media()]
                assert kinds == r["meta"]["media"] and 2 <= len(kinds) <= 4
                assert kinds.count("image") == len(r["meta"]["image"])
            for seg in sample.media():
                assert Path(seg.media).is_file(), seg.media


def test_crossmodal_yes_no_is_balanced(dataset):
    answers, per_kind, beeps = [], Counter(), Counter()
    for i in range(400):
        scene = sample_scene(np.random.default_rng([7, i]))
        plan = scene["crossmodal"]
        answer = crossmodal_answer(scene["image"], scene["audio"], plan["kind"], plan["colour"])
        answers.append(answer)
        per_kind[plan["kind"], answer == "yes"] += 1
        beeps[scene["audio"]["beeps"]] += 1
    yes_no = [a for a in answers if a in ("yes", "no")]
    assert len(yes_no) > 250
    assert 0.35 <= yes_no.count("yes") / len(yes_no) <= 0.65
    for kind in ("equal", "more", "more_beeps", "colour_equal"):
        assert 0.3 <= per_kind[kind, True] / (per_kind[kind, True] + per_kind[kind, False]) <= 0.7, kind
    assert set(beeps) == {1, 2, 3, 4} and min(beeps.values()) > 60
    on_disk = [r["meta"]["answer"] for r in _records(dataset, "train") if r["meta"]["task"] == "crossmodal_qa"]
    on_disk = [a for a in on_disk if a in ("yes", "no")]
    assert 0.3 <= on_disk.count("yes") / len(on_disk) <= 0.7


def test_every_attribute_value_occurs_in_roughly_fair_share():
    values = Counter()
    for i in range(600):
        scene = sample_scene(np.random.default_rng([11, i]))
        values.update((k, o[k]) for o in scene["image"] for k in ("colour", "shape", "size", "position"))
        values.update((k, v) for k, v in scene["audio"].items() if k != "beeps")
    for attribute in ("colour", "shape", "size", "position", "pitch", "waveform", "duration", "loudness"):
        shares = np.array([values[attribute, v] for v in VOCAB[attribute]], dtype=float)
        shares /= shares.sum()
        assert shares.min() > 0.5 / len(shares), (attribute, shares)


def test_sampling_respects_counts_and_modes():
    rng = np.random.default_rng(0)
    counts = Counter(len(sample_image_scene(rng)["objects"]) for _ in range(800))
    assert set(counts) == {1, 2, 3, 4} and min(counts.values()) > 150
    assert sample_audio_scene(rng, held_out="require", beeps=2)["beeps"] == 2
    assert (sample_audio_scene(rng, held_out="require")["pitch"], "sawtooth") in HELD_OUT_TONES
    with pytest.raises(ConfigError):
        sample_image_scene(rng, held_out="sometimes")
    with pytest.raises(ConfigError):
        sample_audio_scene(rng, beeps=5)


def test_mix_validation_and_weights(tmp_path):
    per_scene = resolve_mix({"chat": 0, "document": 0})
    assert per_scene["chat"] == 0 and abs(sum(per_scene.values()) - 8) < 1e-9
    with pytest.raises(ConfigError, match="unknown task"):
        resolve_mix({"captions": 1})
    with pytest.raises(ConfigError, match="finite number"):
        resolve_mix({"chat": -1})
    with pytest.raises(ConfigError):
        generate(tmp_path, train=-1, progress=False)
    summary = generate(tmp_path, train=30, val=0, test=0, gen=0, progress=False,
                       mix={t: 0 for t in per_scene} | {"audio_qa": 1})
    assert summary["splits"]["train"]["tasks"] == {"audio_qa": 30}
    assert not (tmp_path / "val.jsonl").exists()


def test_scene_lines_controls_distinct_media(tmp_path):
    from mmgpt.datasets.shapestones import generate

    few = generate(tmp_path / "a", train=80, val=0, test=0, gen=0, progress=False)
    many = generate(tmp_path / "b", train=80, val=0, test=0, gen=0, scene_lines=2.0, progress=False)
    assert many["splits"]["train"]["scenes"] > 2 * few["splits"]["train"]["scenes"]
    import pytest as _pytest

    from mmgpt.errors import ConfigError

    with _pytest.raises(ConfigError, match="scene_lines"):
        generate(tmp_path / "c", train=8, val=0, test=0, gen=0, scene_lines=0, progress=False)
