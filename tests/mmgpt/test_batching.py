"""Collation: padding sides, packing with isolation between samples, and the loss they give."""

from __future__ import annotations

import pytest
import torch

from mmgpt.batching import IGNORE, block_causal_mask, collate, collate_packed, pack_rows
from tests.conftest import make_image, make_wave

KEYS = ("input_ids", "attention_mask", "position_ids", "labels", "media", "sequence_ids")


def samples(model):
    def chat(parts, answer):
        return [{"role": "user", "content": parts}, {"role": "assistant", "content": [{"type": "text", "text": answer}]}]

    msgs = [
        chat([{"type": "image", "image": make_image(1)}, {"type": "text", "text": "What colour?"}], "red"),
        chat([{"type": "audio", "audio": (make_wave(1.3, 300), 16000)}, {"type": "text", "text": "Beeps?"}], "three"),
        chat([{"type": "text", "text": "Just text, a longer question here."}], "a longer answer than before"),
        chat([{"type": "image", "image": make_image(2)}, {"type": "audio", "audio": (make_wave(0.6, 900), 16000)},
              {"type": "text", "text": "Both?"}], "yes"),
    ]
    return [model.processor(m) for m in msgs]


def test_pack_rows_first_fit_and_too_long():
    assert pack_rows([5, 4, 3, 2], 8) == [[0, 2], [1, 3]]
    with pytest.raises(ValueError, match="more than the packing length"):
        pack_rows([9], 8)


def test_padding_sides_and_labels(tiny_model):
    enc = samples(tiny_model)
    right = collate(enc, tiny_model.pad_token_id)
    left = collate(enc, tiny_model.pad_token_id, padding_side="left")
    n = [len(e) for e in enc]
    for i, e in enumerate(enc):
        assert right["input_ids"][i, : n[i]].tolist() == e.input_ids.tolist()
        assert left["input_ids"][i, -n[i]:].tolist() == e.input_ids.tolist()
        assert (right["labels"][i, n[i]:] == IGNORE).all() and (left["attention_mask"][i, : -n[i]] == 0).all()
    assert right["padding_fraction"] == pytest.approx(1 - sum(n) / (4 * max(n)))
    assert right["media"]["image"][0].shape == (2, 3, 32, 32)
    assert right["media"]["audio"][0].shape == (2, int(1.3 * 16000))
    assert right["media"]["audio"][1].tolist() == [int(1.3 * 16000), int(0.6 * 16000)]
    clip = enc[3].media["audio"][0].values  # the shorter clip: zero-padded on the right
    torch.testing.assert_close(right["media"]["audio"][0][1, : clip.numel()], clip)
    assert (right["media"]["audio"][0][1, clip.numel():] == 0).all()


def test_block_mask_isolates_samples():
    seq = torch.tensor([[0, 0, 1, 1, 1, -1]])
    m = block_causal_mask(seq)[0, 0]
    assert m[1].tolist() == [True, True, False, False, False, False]
    assert m[4].tolist() == [False, False, True, True, True, False]
    assert m[5].tolist() == [False, False, False, False, False, True]  # padding sees only itself
    add = block_causal_mask(seq, boolean=False)[0, 0]
    assert add[4, 1] == torch.finfo(torch.float32).min and add[4, 2] == 0


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_equals_padded_loss_and_logits(tiny_config, attn):
    from mmgpt.config import MMGPTConfig, apply_overrides
    from mmgpt.model import MMGPT

    torch.manual_seed(0)
    cfg = MMGPTConfig.from_dict(apply_overrides(tiny_config.to_dict(), [f"decoder.attn_implementation={attn}"]))
    model = MMGPT(cfg).eval()
    enc = samples(model)
    padded = collate(enc, model.pad_token_id)
    packed = collate_packed(enc, model.pad_token_id, max_len=sum(len(e) for e in enc))
    assert packed["input_ids"].shape[0] == 1  # all four in one row
    assert packed["num_targets"] == padded["num_targets"]
    with torch.no_grad():
        a = model(**{k: padded[k] for k in KEYS if k in padded})
        b = model(**{k: packed[k] for k in KEYS if k in packed})
    torch.testing.assert_close(b.loss, a.loss, atol=1e-5, rtol=1e-5)
    start = 0
    for i, e in enumerate(enc):
        n = len(e)
        torch.testing.assert_close(b.logits[0, start : start + n], a.logits[i, :n], atol=1e-4, rtol=1e-4)
        start += n


def test_packing_reduces_padding(tiny_model):
    enc = samples(tiny_model) * 3
    padded = collate(enc, tiny_model.pad_token_id)
    packed = collate_packed(enc, tiny_model.pad_token_id, max_len=256)
    assert packed["padding_fraction"] < padded["padding_fraction"]
    assert packed["input_ids"].shape[0] < len(enc)


@pytest.mark.parametrize("weighting", ["sample", "square"])
def test_loss_weighting_matches_per_sample_losses_padded_and_packed(tiny_model, weighting):
    """sample: the mean of each sample's token mean; square: token means weighted by sqrt(n)."""
    model = tiny_model.eval()
    enc = samples(model)
    keys = (*KEYS, "loss_weights")
    with torch.no_grad():
        alone = [model(**{k: b[k] for k in KEYS if k in b}) for b in (collate([e], model.pad_token_id) for e in enc)]
        means = torch.stack([o.loss for o in alone])
        n = torch.tensor([float(o.target_weight) for o in alone])
        w = torch.ones_like(n) if weighting == "sample" else n.sqrt()
        expected = (w * means).sum() / w.sum()
        padded = collate(enc, model.pad_token_id, weighting=weighting)
        packed = collate_packed(enc, model.pad_token_id, max_len=sum(len(e) for e in enc), weighting=weighting)
        for batch in (padded, packed):
            out = model(**{k: batch[k] for k in keys if k in batch})
            torch.testing.assert_close(out.loss, expected, atol=1e-5, rtol=1e-5)
            assert out.target_weight == pytest.approx(batch["target_weight"]) == pytest.approx(float(w.sum()))
            assert batch["num_targets"] == int(n.sum())
    token = collate(enc, model.pad_token_id)
    assert "loss_weights" not in token and token["target_weight"] == token["num_targets"]
    assert not (means == means[0]).all()  # the weightings differ on these samples
