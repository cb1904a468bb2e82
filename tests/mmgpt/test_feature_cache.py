"""The frozen-feature cache sits before decoding: a hit skips the decoder and the encoder, gives the
same model output, and a changed file or encoder is a miss."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch

from mmgpt import modalities
from mmgpt.batching import collate
from mmgpt.feature_cache import FeatureCache, encoder_fingerprint, source_key
from tests.conftest import make_image, make_wave


def chat(image_path, wav):
    return [{"role": "user", "content": [{"type": "image", "image": str(image_path)},
                                         {"type": "audio", "audio": wav}, {"type": "text", "text": "Both?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "yes"}]}]


@pytest.fixture
def files(tmp_path):
    make_image(1, size=32).save(tmp_path / "a.png")
    return tmp_path / "a.png", (make_wave(0.6, 500), 16000)


def caches_for(model, root=None):
    return {m: FeatureCache(root, encoder_fingerprint(e), m) for m, e in model.encoders.items()}


def fill(model, batch, caches):
    """What the training objective does: encode the misses, keep them, hand the model features."""
    def encoder(m):
        return lambda values, lengths: model.encoders[m](values, lengths)

    return {m: caches[m].features_for(items, encoder(m), torch.device("cpu"))
            for m, items in batch.pop("cached_media").items()}


def test_source_key_is_the_file_identity_and_content_for_memory(tmp_path):
    path = tmp_path / "x.png"
    make_image(2).save(path)
    key = source_key(path)
    assert key == source_key(str(path)) == source_key(tmp_path / "." / "x.png")
    make_image(3).save(path)  # rewritten: another size or mtime
    os.utime(path, ns=(1, 1))
    assert source_key(path) not in (None, key)
    assert source_key(tmp_path / "missing.png") is None  # decoding reports it
    wave = make_wave(0.2)
    assert source_key((wave, 16000)) == source_key((wave.copy(), 16000)) != source_key((wave, 8000))
    assert source_key(np.zeros(4)) != source_key(np.zeros(5)) and source_key(b"ab") != source_key(b"abc")
    assert source_key(make_image(1)) == source_key(make_image(1)) != source_key(make_image(2))
    assert source_key(object()) is None


def test_a_hit_skips_decoding_and_gives_the_same_logits(tiny_model, files, monkeypatch):
    model = tiny_model
    caches = caches_for(model)
    msgs = chat(*files)
    first = model.processor(msgs, cache=caches)
    assert all(it.values is not None and it.key for items in first.media.values() for it in items)
    batch = collate([first], model.pad_token_id)
    assert batch["media"] == {} and set(batch["cached_media"]) == {"image", "audio"}
    features = fill(model, batch, caches)
    assert {m: len(c) for m, c in caches.items()} == {"image": 1, "audio": 1}

    def no_decoding(*args, **kwargs):
        raise AssertionError("a cached item was decoded")

    for m in modalities.MODALITIES:
        monkeypatch.setitem(modalities.MODALITIES, m, dataclasses.replace(modalities.MODALITIES[m], load=no_decoding))
    second = model.processor(msgs, cache=caches)
    assert torch.equal(second.input_ids, first.input_ids)  # same token counts from the cached features
    assert all(it.values is None and it.features is not None for items in second.media.values() for it in items)
    batch2 = collate([second], model.pad_token_id)
    features2 = fill(model, batch2, caches)
    assert caches["image"].hits == 1 and caches["image"].misses == 1
    monkeypatch.undo()
    plain = collate([model.processor(msgs)], model.pad_token_id)
    with torch.no_grad():
        ref = model(plain["input_ids"], labels=plain["labels"], media=plain["media"])
        cached = model(batch2["input_ids"], labels=batch2["labels"], features=features2)
        first_pass = model(batch["input_ids"], labels=batch["labels"], features=features)
    torch.testing.assert_close(cached.logits, ref.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(first_pass.logits, ref.logits, atol=1e-5, rtol=1e-5)


def test_a_changed_file_is_a_miss(tiny_model, files):
    image, wav = files
    caches = caches_for(tiny_model)
    fill(tiny_model, collate([tiny_model.processor(chat(image, wav), cache=caches)], tiny_model.pad_token_id), caches)
    make_image(7, size=32).save(image)  # the same path, new pixels
    os.utime(image, ns=(10**9, 10**9))
    again = tiny_model.processor(chat(image, wav), cache=caches)
    assert again.media["image"][0].values is not None  # decoded afresh
    assert again.media["audio"][0].features is not None  # the clip is unchanged


def test_shards_round_trip_and_a_changed_encoder_gets_a_new_cache(tiny_config, files, tmp_path):
    from mmgpt.model import MMGPT

    torch.manual_seed(0)
    model = MMGPT(tiny_config).eval()
    caches = caches_for(model, tmp_path / "fc")
    fill(model, collate([model.processor(chat(*files), cache=caches)], model.pad_token_id), caches)
    for c in caches.values():
        c.flush("run-step00000002")
    reopened = caches_for(model, tmp_path / "fc")
    assert {m: len(c) for m, c in reopened.items()} == {"image": 1, "audio": 1}
    key = source_key(files[0])
    torch.testing.assert_close(reopened["image"].lookup(key), caches["image"].lookup(key), atol=0, rtol=0)
    later = {m: FeatureCache(tmp_path / "fc", encoder_fingerprint(e), m, skip=lambda name: name.endswith("02"))
             for m, e in model.encoders.items()}
    assert all(len(c) == 0 for c in later.values())  # a resumed run ignores shards written after its step
    before = encoder_fingerprint(model.encoders["image"])
    with torch.no_grad():
        next(model.encoders["image"].parameters()).add_(1e-3)
    assert encoder_fingerprint(model.encoders["image"]) != before
    assert len(caches_for(model, tmp_path / "fc")["image"]) == 0  # new weights: a new, empty cache


def test_every_modality_has_a_config_field_an_encoder_and_derived_tokens(tiny_model):
    from mmgpt.config import ENCODER_FIELDS
    from mmgpt.tokenizer import MEDIA_TOKENS, SPECIAL_TOKENS

    assert tuple(modalities.MODALITIES) == tuple(ENCODER_FIELDS)
    for name, entry in modalities.MODALITIES.items():
        assert entry.tokens == (f"<|{name}_start|>", f"<|{name}_pad|>", f"<|{name}_end|>") == MEDIA_TOKENS[name]
        assert set(entry.tokens) <= set(SPECIAL_TOKENS)
        encoder = tiny_model.encoders[name]
        assert isinstance(encoder, entry.encoder) and encoder.modality == name
        values, lengths = encoder.dummy_input()
        feats, n = encoder(values, lengths)
        assert feats.shape == (1, encoder.num_tokens(int(lengths[0])), encoder.output_dim)
        assert n.tolist() == [feats.shape[1]]
    with pytest.raises(KeyError, match="unknown modality 'video'"):
        modalities.modality("video")
