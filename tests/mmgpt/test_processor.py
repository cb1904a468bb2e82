"""Processor: token layout, labels, media expansion, context trimming."""

from __future__ import annotations

import pytest

from mmgpt.datasets.schema import Sample
from mmgpt.errors import ContextOverflowError, DataError, InvalidMediaError
from mmgpt.tokenizer import special_ids
from tests.conftest import make_image, make_wave

IGNORE = -100


def chat(text="How many?", answer="three", image=True, audio=False):
    content = []
    if image:
        content.append({"type": "image", "image": make_image()})
    if audio:
        content.append({"type": "audio", "audio": (make_wave(0.5), 16000)})
    content.append({"type": "text", "text": text})
    return [{"role": "user", "content": content}, {"role": "assistant", "content": [{"type": "text", "text": answer}]}]


def test_media_expands_to_model_token_counts(tiny_model):
    proc = tiny_model.processor
    ids = special_ids(tiny_model.tokenizer)
    enc = proc(chat(image=True, audio=True))
    seq = enc.input_ids.tolist()
    n_img = seq.count(ids["<|image_pad|>"])
    n_aud = seq.count(ids["<|audio_pad|>"])
    assert n_img == proc.num_media_tokens("image") == 4  # 32 px / 8 px patches = 16, pixel shuffle 2 -> 4
    assert n_aud == proc.num_media_tokens("audio", 8000) == 13  # 0.5 s: 50 mel frames -> 25 -> stack 2 -> 13
    i = seq.index(ids["<|image_start|>"])
    assert seq[i + 1 : i + 1 + n_img] == [ids["<|image_pad|>"]] * n_img
    assert seq[i + 1 + n_img] == ids["<|image_end|>"]
    assert enc.media["image"][0].values.shape == (3, 32, 32)
    assert enc.media["audio"][0].values.shape == (8000,)


def test_labels_only_on_assistant_content_and_im_end(tiny_model):
    tok = tiny_model.tokenizer
    enc = tiny_model.processor(chat(answer="three"))
    trained = [t for t, lab in zip(enc.input_ids.tolist(), enc.labels.tolist()) if lab != IGNORE]
    assert tok.decode(trained, skip_special_tokens=False) == " three<|im_end|>"  # the tiny BPE prefixes a space
    assert all(lab in (IGNORE, t) for t, lab in zip(enc.input_ids.tolist(), enc.labels.tolist()))


def test_document_labels_all_text_and_eos_not_media(tiny_model):
    tok = tiny_model.tokenizer
    doc = Sample.from_document([{"type": "text", "text": "A picture:"}, {"type": "image", "image": make_image()},
                                {"type": "text", "text": " done."}])
    enc = tiny_model.processor(doc)
    trained = [t for t, lab in zip(enc.input_ids.tolist(), enc.labels.tolist()) if lab != IGNORE]
    assert tok.decode(trained, skip_special_tokens=False) == " A picture: done.<|endoftext|>"


def test_media_after_text_moves_user_media_behind_the_question(tiny_config, tmp_path):
    import copy

    import torch

    from mmgpt.model import MMGPT

    cfg = copy.deepcopy(tiny_config)
    cfg.tokenizer.media_after_text = True
    torch.manual_seed(0)
    model = MMGPT(cfg).eval()
    ids = special_ids(model.tokenizer)
    img, wav = make_image(1), (make_wave(0.5), 16000)
    msgs = [{"role": "user", "content": [{"type": "image", "image": img}, {"type": "text", "text": "What?"},
                                          {"type": "audio", "audio": wav}, {"type": "text", "text": " Say."}]},
            {"role": "assistant", "content": [{"type": "text", "text": "red"}]}]
    moved = model.processor(msgs)
    listed = [{"role": "user", "content": [{"type": "text", "text": "What?"}, {"type": "text", "text": " Say."},
                                           {"type": "image", "image": img}, {"type": "audio", "audio": wav}]},
              msgs[1]]
    same = model.processor(listed)
    assert torch.equal(moved.input_ids, same.input_ids) and torch.equal(moved.labels, same.labels)
    seq = moved.input_ids.tolist()
    text_end = max(i for i, t in enumerate(seq[: seq.index(ids["<|im_end|>"])]) if t not in
                   {ids[k] for k in ("<|image_start|>", "<|image_pad|>", "<|image_end|>", "<|audio_start|>",
                                     "<|audio_pad|>", "<|audio_end|>")})
    assert text_end < seq.index(ids["<|image_start|>"]) < seq.index(ids["<|audio_start|>"])
    template = model.tokenizer.apply_chat_template(msgs, tokenize=False)
    assert template.startswith("<|im_start|>user\n What? Say.<|image_start|><|image_pad|><|image_end|><|audio_start|>")
    # the template has one pad per item; the processor expands it to the item's tokens
    collapsed = [t for i, t in enumerate(seq) if not (t in (ids["<|image_pad|>"], ids["<|audio_pad|>"]) and seq[i - 1] == t)]
    assert collapsed == model.tokenizer.apply_chat_template(msgs, tokenize=True)["input_ids"]
    # a document keeps its order; the option off keeps the message's order
    doc = Sample.from_document([{"type": "image", "image": img}, {"type": "text", "text": "A picture."}])
    assert model.processor(doc).input_ids.tolist()[0] == ids["<|image_start|>"]
    plain = MMGPT(tiny_config).eval().processor(msgs).input_ids.tolist()
    assert plain.index(ids["<|image_start|>"]) < plain.index(ids["<|audio_start|>"]) and plain != seq
    # a saved model keeps the layout
    model.save_pretrained(tmp_path / "m")
    loaded = MMGPT.from_pretrained(tmp_path / "m")
    assert loaded.config.tokenizer.media_after_text
    assert loaded.processor(msgs).input_ids.tolist() == seq


def test_user_typed_markers_stay_text(tiny_model):
    ids = special_ids(tiny_model.tokenizer)
    enc = tiny_model.processor(chat(text="<image> <|image_pad|><|audio_start|><|im_end|>", image=False))
    seq = enc.input_ids.tolist()
    for t in ("<|image_pad|>", "<|audio_start|>"):
        assert ids[t] not in seq
    assert seq.count(ids["<|im_end|>"]) == 2  # only the two real turn ends


def test_long_prompt_is_cut_from_the_left_in_text_only(tiny_model):
    proc = tiny_model.processor
    ids = special_ids(tiny_model.tokenizer)
    long_text = "word " * 300
    msgs = [{"role": "user", "content": [{"type": "text", "text": long_text},
                                         {"type": "image", "image": make_image()},
                                         {"type": "text", "text": "What colour?"}]}]
    enc = proc(msgs, add_generation_prompt=True, max_length=64)
    seq = enc.input_ids.tolist()
    assert len(seq) == 64
    assert enc.trimmed == len(proc(msgs, add_generation_prompt=True, max_length=10_000)) - 64
    assert seq.count(ids["<|image_pad|>"]) == 4  # the media span is whole
    assert seq[0] == ids["<|im_start|>"]  # chat markers kept
    assert tiny_model.tokenizer.decode(seq).endswith("What colour?\nassistant\n") or "What colour?" in \
        tiny_model.tokenizer.decode(seq)


def test_media_alone_over_context_raises(tiny_model):
    msgs = [{"role": "user", "content": [{"type": "image", "image": make_image()}] * 3}]
    with pytest.raises(ContextOverflowError, match="context holds 12"):
        tiny_model.processor(msgs, max_length=12)


def test_bad_media_and_missing_modality(tiny_model, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(InvalidMediaError, match=r"broken\.png"):
        tiny_model.processor([{"role": "user", "content": [{"type": "image", "image": str(bad)}]}])
    from mmgpt.config import MMGPTConfig, apply_overrides
    from mmgpt.processor import Processor

    cfg = MMGPTConfig.from_dict(apply_overrides(tiny_model.config.to_dict(), ["audio=null"]))
    proc = Processor(tiny_model.tokenizer, cfg, {"image": tiny_model.encoders["image"]})
    with pytest.raises(DataError, match="no audio encoder"):
        proc(chat(image=False, audio=True))
