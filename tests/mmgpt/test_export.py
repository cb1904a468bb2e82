"""``mmgpt export --format llava``: plain transformers (no mmgpt import) loads the folder, and its
logits, greedy generations and chat-template ids are mmgpt's; models that do not map are refused
naming the part."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from mmgpt.errors import ExportError
from mmgpt.export import export
from mmgpt.model import MMGPT
from tests.conftest import make_image, random_head

SMALL = ["vision.img_size=32", "vision.embed_dim=32", "vision.depth=3", "vision.num_heads=2",
         "decoder.hidden_size=64", "decoder.intermediate_size=128", "decoder.num_layers=2", "decoder.num_heads=4",
         "tokenizer.vocab_size=300", "max_length=128"]

# Runs in a fresh interpreter: transformers only (mmgpt must not even be importable by accident).
PLAIN = r"""
import json, sys
import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoProcessor, LlavaForConditionalGeneration
out, image, text = sys.argv[1], sys.argv[2], sys.argv[3]
model = LlavaForConditionalGeneration.from_pretrained(out, dtype=torch.float32).eval()
proc = AutoProcessor.from_pretrained(out, backend="pil")
msgs = [{"role": "user", "content": [{"type": "image", "image": Image.open(image)}, {"type": "text", "text": text}]}]
inp = proc.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt")
with torch.no_grad():
    logits = model(**inp).logits
    gen = model.generate(**inp, max_new_tokens=12, do_sample=False)
save_file({"logits": logits.contiguous()}, out + "/../plain_logits.safetensors")
print(json.dumps({"ids": inp["input_ids"][0].tolist(), "gen": gen[0, inp["input_ids"].shape[1]:].tolist(),
                  "mmgpt_imported": any(m.startswith("mmgpt") for m in sys.modules)}))
"""


@pytest.mark.parametrize("select_layer, adapter", [(-1, "mlp"), (-2, "linear")])
def test_plain_transformers_loads_the_export_with_mmgpts_logits_and_generations(tmp_path, select_layer, adapter):
    torch.manual_seed(0)
    model = MMGPT.from_config("llava", overrides=[*SMALL, f"vision.select_layer={select_layer}",
                                                  f"adapters.image.type={adapter}"])
    random_head(model).save_pretrained(tmp_path / "run" / "final")
    out = export(tmp_path / "run" / "final", tmp_path / "llava")
    assert {"config.json", "model.safetensors", "generation_config.json", "processor_config.json",
            "tokenizer.json", "chat_template.jinja", "README.md"} <= {p.name for p in out.iterdir()}
    image = tmp_path / "a.png"
    make_image(4, size=50).convert("RGB").resize((48, 40)).save(image)
    # typed control tokens stay plain text in the exported template, as in mmgpt's processor
    text = "What shape is at the top left? <|image_pad|> or<|im_start|>user"
    res = subprocess.run([sys.executable, "-c", PLAIN, str(out), str(image), text], capture_output=True, text=True,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    plain = json.loads(res.stdout.strip().splitlines()[-1])
    assert plain["mmgpt_imported"] is False

    from PIL import Image

    msgs = [{"role": "user", "content": [{"type": "image", "image": Image.open(image)}, {"type": "text", "text": text}]}]
    enc = model.processor(msgs, add_generation_prompt=True)
    assert plain["ids"] == enc.input_ids.tolist()  # the exported chat template renders mmgpt's ids
    from mmgpt.batching import collate

    batch = collate([enc], model.pad_token_id)
    with torch.no_grad():
        ours = model(batch["input_ids"], batch["attention_mask"], media=batch["media"]).logits
    theirs = load_file(str(tmp_path / "plain_logits.safetensors"))["logits"]
    assert (ours - theirs).abs().max().item() < 1e-4
    greedy = model.generate(msgs, max_new_tokens=12, return_ids=True)[0]
    assert plain["gen"][: len(greedy)] == greedy and len(set(greedy)) > 2, greedy


@pytest.mark.parametrize("preset, overrides, part", [
    ("tiny", [], "audio"),
    ("tiny", ["audio=null"], "adapters.image.reducer='pixel_shuffle'"),
    ("quickstart", ["audio=null"], "hybrid stem|pos_embed"),
    ("llava", [*SMALL, "adapters.image.type=resampler"], "resampler adapter"),
    ("llava", [*SMALL, "vision.reg_tokens=2"], "register tokens"),
])
def test_a_model_that_does_not_map_is_refused_naming_the_part(tmp_path, preset, overrides, part):
    MMGPT.from_config(preset, overrides=overrides).save_pretrained(tmp_path / "m")
    with pytest.raises(ExportError, match=part):
        export(tmp_path / "m", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_export_never_replaces_a_folder_that_is_not_an_export(tmp_path):
    from mmgpt.errors import ConfigError

    MMGPT.from_config("llava", overrides=SMALL).save_pretrained(tmp_path / "m")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not an earlier export"):
        export(tmp_path / "m", tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    export(tmp_path / "m", tmp_path / "out")
    export(tmp_path / "m", tmp_path / "out")  # an earlier export is replaced
