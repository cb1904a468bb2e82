"""``mmgpt export --format hf``: after ``import mmgpt``, transformers' Auto classes load the folder of
an image+audio model, and its logits, loss, greedy and beam generations and chat-template ids are
mmgpt's; ``save_pretrained`` / ``from_pretrained`` round-trip; PEFT wraps it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from mmgpt.batching import collate
from mmgpt.errors import CheckpointError
from mmgpt.model import MMGPT
from tests.conftest import make_image, make_wave, random_head

# Runs in a fresh interpreter: transformers' Auto classes, after `import mmgpt` registered the type.
AUTO = r"""
import json, sys
import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
import mmgpt  # registers model_type "mmgpt"
from transformers import AutoModelForImageTextToText, AutoProcessor
out, image, clip, text = sys.argv[1:5]
model = AutoModelForImageTextToText.from_pretrained(out)
proc = AutoProcessor.from_pretrained(out)
wave = (np.load(clip), 16000)
msgs = [{"role": "user", "content": [{"type": "image", "image": Image.open(image)},
                                     {"type": "audio", "audio": wave}, {"type": "text", "text": text}]}]
inp = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
rendered = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
by_text = proc(text=rendered, images=[Image.open(image)], audio=[wave])
with torch.no_grad():
    logits = model(**inp).logits
    gen = model.generate(**inp, max_new_tokens=12, do_sample=False)
    beams = model.generate(**inp, max_new_tokens=6, num_beams=3, do_sample=False)
save_file({"logits": logits.contiguous()}, out + "/../auto_logits.safetensors")
n = inp["input_ids"].shape[1]
print(json.dumps({"ids": inp["input_ids"][0].tolist(), "by_text": by_text["input_ids"][0].tolist(),
                  "gen": gen[0, n:].tolist(), "text": proc.decode(gen[0, n:], skip_special_tokens=True), "beams": beams[0, n:].tolist(), "prompt_kept": gen[0, :n].tolist(),
                  "model": type(model).__name__, "processor": type(proc).__name__}))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from mmgpt.cli import main

    tmp = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    model = MMGPT.from_config("tiny")
    torch.manual_seed(0)
    model = random_head(model)
    model.save_pretrained(tmp / "run" / "final")
    assert main(["export", str(tmp / "run" / "final"), str(tmp / "hf"), "--format", "hf"]) == 0
    return model, tmp / "hf", tmp


def test_transformers_auto_classes_load_the_export_with_mmgpts_outputs(exported):
    model, out, tmp = exported
    assert {"config.json", "model.safetensors", "generation_config.json", "processor_config.json",
            "tokenizer.json", "chat_template.jinja", "README.md"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "config.json").read_text())["model_type"] == "mmgpt"
    image, clip = tmp / "a.png", tmp / "a.npy"
    make_image(4, size=50).convert("RGB").save(image)
    import numpy as np

    np.save(clip, make_wave(0.7, freq=660.0))
    text = "Which is louder? <|image_pad|> or<|im_start|>user <|audio_pad|>"  # typed tokens stay plain text
    res = subprocess.run([sys.executable, "-c", AUTO, str(out), str(image), str(clip), text], capture_output=True,
                         text=True, cwd=tmp)
    assert res.returncode == 0, res.stderr[-3000:]
    auto = json.loads(res.stdout.strip().splitlines()[-1])
    assert (auto["model"], auto["processor"]) == ("MMGPTForConditionalGeneration", "MMGPTProcessor")

    from PIL import Image

    msgs = [{"role": "user", "content": [{"type": "image", "image": Image.open(image)},
                                         {"type": "audio", "audio": (np.load(clip), 16000)},
                                         {"type": "text", "text": text}]}]
    enc = model.processor(msgs, add_generation_prompt=True)
    assert auto["ids"] == enc.input_ids.tolist() == auto["by_text"] == auto["prompt_kept"]
    batch = collate([enc], model.pad_token_id)
    with torch.no_grad():
        ours = model(batch["input_ids"], batch["attention_mask"], media=batch["media"]).logits
    theirs = load_file(str(tmp / "auto_logits.safetensors"))["logits"]
    assert (ours - theirs).abs().max().item() < 1e-4
    greedy = model.generate(msgs, max_new_tokens=12, return_ids=True)[0]
    assert auto["gen"][: len(greedy)] == greedy and len(set(greedy)) > 2, greedy
    assert auto["text"] == model.generate(msgs, max_new_tokens=12)[0]
    beams = model.generate(msgs, max_new_tokens=6, num_beams=3, return_ids=True)[0]
    assert auto["beams"][: len(beams)] == beams


def test_loss_round_trip_and_peft_on_the_transformers_class(exported, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model, out, _ = exported
    hf = AutoModelForImageTextToText.from_pretrained(out)
    proc = AutoProcessor.from_pretrained(out)
    msgs = [{"role": "user", "content": [{"type": "image", "image": make_image(2)}, {"type": "text", "text": "shape?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "a red star"}]}]
    enc = model.processor(msgs)
    batch = collate([enc], model.pad_token_id)
    inp = proc.apply_chat_template(msgs, tokenize=True, return_dict=True)
    assert inp["input_ids"][0].tolist() == enc.input_ids.tolist()
    with torch.no_grad():
        ours = model(batch["input_ids"], batch["attention_mask"], labels=batch["labels"], media=batch["media"]).loss
        theirs = hf(**inp, labels=batch["labels"]).loss
    assert abs(ours.item() - theirs.item()) < 1e-5
    hf.save_pretrained(tmp_path / "again")
    again = AutoModelForImageTextToText.from_pretrained(tmp_path / "again")
    with torch.no_grad():
        assert torch.equal(again(**inp).logits, hf(**inp).logits)

    from peft import LoraConfig, get_peft_model

    lora = get_peft_model(again, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    loss = lora(**inp, labels=batch["labels"]).loss
    loss.backward()
    grads = {n: p.grad for n, p in lora.named_parameters() if "lora_" in n}
    decoder = [g for n, g in grads.items() if ".decoder." in n]  # the audio encoder's q/v sit out: no clip here
    assert decoder and all(g is not None and g.abs().sum() > 0 for g in decoder[1::2])  # the B matrices


def test_damaged_or_mismatched_weights_are_refused(exported, tmp_path):
    import shutil

    from safetensors.torch import save_file
    from transformers import AutoModelForImageTextToText

    _, out, _ = exported
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    weights = load_file(str(bad / "model.safetensors"))
    name = next(k for k in weights if k.endswith("q_proj.weight"))
    weights[name] = weights[name][:-1]
    save_file(weights, str(bad / "model.safetensors"))
    with pytest.raises(CheckpointError, match="q_proj"):
        AutoModelForImageTextToText.from_pretrained(bad)
    (bad / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError):
        AutoModelForImageTextToText.from_pretrained(bad)
