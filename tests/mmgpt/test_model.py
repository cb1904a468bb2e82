"""MMGPT: merging, generation equivalences, checkpoints, pretrained parts, trainable flags."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from mmgpt.batching import collate
from mmgpt.config import MMGPTConfig, apply_overrides
from mmgpt.errors import CheckpointError, ConfigError
from mmgpt.model import MMGPT, load
from tests.conftest import make_image, make_wave

BATCH_KEYS = ("input_ids", "attention_mask", "position_ids", "labels", "media", "sequence_ids")


def model_inputs(batch):
    return {k: batch[k] for k in BATCH_KEYS if k in batch}


def user(*parts):
    content = []
    for p in parts:
        if p == "image":
            content.append({"type": "image", "image": make_image(len(content))})
        elif p == "audio":
            content.append({"type": "audio", "audio": (make_wave(0.7, 300 + 100 * len(content)), 16000)})
        elif isinstance(p, tuple):
            content.append({"type": "audio", "audio": (make_wave(p[1], 500), 16000)})
        else:
            content.append({"type": "text", "text": p})
    return [{"role": "user", "content": content}]


def test_image_audio_text_in_one_sequence(tiny_model):
    answer = {"role": "assistant", "content": [{"type": "text", "text": "yes"}]}
    msgs = [*user("image", "audio", "Are there as many shapes as beeps?"), answer]
    batch = collate([tiny_model.processor(msgs)], tiny_model.pad_token_id)
    out = tiny_model(**model_inputs(batch))
    assert out.logits.shape == (*batch["input_ids"].shape, len(tiny_model.tokenizer))
    assert out.target_weight == 5  # " ", "y", "e", "s" (bytes: prefix space + answer) and <|im_end|>
    assert torch.isfinite(out.loss)


def test_feature_placeholder_mismatch_raises(tiny_model):
    batch = collate([tiny_model.processor(user("image", "hi"))], tiny_model.pad_token_id)
    pad = tiny_model.media_token_ids["image"]
    ids = batch["input_ids"]
    first = (ids[0] == pad).nonzero()[0, 0]
    ids[0, first] = 100  # a plain byte token: one placeholder fewer than the adapter gives
    with pytest.raises(ValueError, match=r"3 image pad tokens but the image features give 4"):
        tiny_model(**model_inputs(batch))
    batch = collate([tiny_model.processor(user("image", "hi"))], tiny_model.pad_token_id)
    del batch["media"]["image"]
    with pytest.raises(ValueError, match="no image was given"):
        tiny_model(**model_inputs(batch))


def test_kv_cache_greedy_equals_no_cache(tiny_model):
    prompt = user("image", "audio", "Describe both.")
    with_cache = tiny_model.generate([prompt], max_new_tokens=12, min_new_tokens=12, return_ids=True)
    without = tiny_model.generate([prompt], max_new_tokens=12, min_new_tokens=12, use_cache=False, return_ids=True)
    assert with_cache == without
    assert len(with_cache[0]) == 12


def test_batched_left_padded_mixed_modalities_equals_one_by_one(tiny_model):
    prompts = [user("image", "What colour?"), user(("a", 2.3), "How many beeps?"),
               user("short"), user("image", ("a", 0.6), "image", "Compare these two pictures and the sound.")]
    batched = tiny_model.generate(prompts, max_new_tokens=8, min_new_tokens=8, return_ids=True)
    single = [tiny_model.generate([p], max_new_tokens=8, min_new_tokens=8, return_ids=True)[0] for p in prompts]
    assert batched == single


def test_save_load_identical_logits(tiny_model, tmp_path):
    msgs = user("image", "audio", "x")
    batch = model_inputs(collate([tiny_model.processor(msgs)], tiny_model.pad_token_id))
    tiny_model.save_pretrained(tmp_path / "ck")
    names = sorted(p.name for p in (tmp_path / "ck").iterdir())
    assert {"config.json", "model.safetensors", "manifest.json", "tokenizer.json"} <= set(names)
    assert not list(tmp_path.glob(".ck.tmp-*"))  # the temp dir was renamed into place
    back = load(tmp_path / "ck").eval()
    with torch.no_grad():
        torch.testing.assert_close(back(**batch).logits, tiny_model(**batch).logits, atol=0, rtol=0)
    assert back.config == MMGPTConfig.from_json(tmp_path / "ck" / "config.json")


def test_checkpoint_from_before_prefix_space_loads_with_it_off(tiny_model, tmp_path):
    """A config.json without tokenizer.prefix_space (written before the option) loads with it
    off, as that model was trained; one that states it keeps its value."""
    import json

    from mmgpt.safe_io import write_manifest

    ck = tiny_model.save_pretrained(tmp_path / "ck")
    assert load(ck).config.tokenizer.prefix_space is tiny_model.config.tokenizer.prefix_space is True
    raw = json.loads((ck / "config.json").read_text())
    del raw["tokenizer"]["prefix_space"]
    (ck / "config.json").write_text(json.dumps(raw))
    write_manifest(ck)
    old = load(ck)
    assert old.config.tokenizer.prefix_space is False
    assert old.processor.encode_text("white") != tiny_model.processor.encode_text("white")


def test_model_leaves_the_callers_config_unchanged(tiny_config):
    import copy

    from mmgpt.model import MMGPT

    cfg = copy.deepcopy(tiny_config)
    cfg.tokenizer.prefix_space = None
    model = MMGPT(cfg)
    assert cfg.tokenizer.prefix_space is None  # resolved in the model's own copy only
    assert model.config.tokenizer.prefix_space is True and model.config is not cfg


def test_damaged_checkpoints_raise_checkpoint_error(tiny_model, tmp_path):
    ck = tiny_model.save_pretrained(tmp_path / "ck")
    w = ck / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-10] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256 mismatch"):
        load(ck)
    w.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match="truncated"):
        load(ck)
    (ck / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"config\.json is missing"):
        load(ck)
    with pytest.raises(CheckpointError, match="not found"):
        load(tmp_path / "nowhere")


def test_pretrained_transformers_decoder_and_tokenizer_load(tmp_path, tiny_model):
    # A tiny Llama saved inside the test stands in for any hub causal LM.
    tok = tiny_model.tokenizer
    base_vocab = len(tok)
    torch.manual_seed(3)
    lm = AutoModelForCausalLM.from_config(LlamaConfig(vocab_size=base_vocab, hidden_size=48, intermediate_size=96,
                                                      num_hidden_layers=2, num_attention_heads=4,
                                                      max_position_embeddings=256))
    lm.save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    data = apply_overrides(tiny_model.config.to_dict(),
                           [f"decoder.pretrained_path={tmp_path / 'lm'}", f"tokenizer.path={tmp_path / 'lm'}"])
    model = MMGPT(MMGPTConfig.from_dict(data)).eval()
    assert model.decoder.config.hidden_size == 48
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(model.decoder(input_ids=ids).logits, lm(input_ids=ids).logits)
    # Saved and reloaded without the original directory: the full decoder config is inlined.
    model.save_pretrained(tmp_path / "mm")
    saved = json.loads((tmp_path / "mm" / "config.json").read_text())
    assert saved["decoder"]["pretrained_path"] is None and saved["decoder"]["hf_config"]["hidden_size"] == 48
    (tmp_path / "lm" / "model.safetensors").unlink()
    back = load(tmp_path / "mm")
    with torch.no_grad():
        torch.testing.assert_close(back.decoder(input_ids=ids).logits, lm(input_ids=ids).logits)


def test_trainable_flags_per_part(tiny_config):
    model = MMGPT(tiny_config)
    model.set_trainable({"encoders": False, "decoder": False, "adapters": True})
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"adapters"}
    model.set_trainable({"encoders.audio": True})
    assert all(p.requires_grad for p in model.encoders["audio"].parameters())
    assert not any(p.requires_grad for p in model.encoders["image"].parameters())
    with pytest.raises(ConfigError, match="unknown model part"):
        model.set_trainable({"projector": True})


def test_caption_and_chat_api(tiny_model):
    text = tiny_model.caption(image=make_image(), max_new_tokens=4)
    assert isinstance(text, str)
    wav_text = tiny_model.caption(audio=(make_wave(0.5), 16000), max_new_tokens=4)
    assert isinstance(wav_text, str)
    msgs = user("image", "What?")
    pieces = list(tiny_model.chat(msgs, stream=True, max_new_tokens=6, min_new_tokens=6))
    assert "".join(pieces).strip() == tiny_model.chat(msgs, max_new_tokens=6, min_new_tokens=6)
    with pytest.raises(ValueError, match="exactly one"):
        tiny_model.caption()
