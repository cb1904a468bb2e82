"""``compile: true | false | auto``: a compiled training run ends where the eager one does, and
``auto`` keeps the compiled decoder only when the measured saving pays for the compile."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from mmgpt.train import TrainConfig, train
from mmgpt.train.compile import CompileChoice
from tests.mmgpt.train.conftest import overrides, recipe


@pytest.mark.parametrize("steps, keep", [(100, True), (20, False)])
def test_auto_keeps_the_compiled_module_only_when_it_pays(steps, keep):
    module = torch.nn.Linear(2, 2)
    choice = CompileChoice("auto", module, steps)
    # eager 1.0 s; the first compiled step 10.0 s (9.5 s of it compiling); then 0.5 s a step
    for i, seconds in enumerate([2.0, 1.0, 10.0, 0.5]):
        choice.before(i)
        if i == 2:
            assert module._compiled_call_impl is not None  # compiled before the first timed compiled step
        choice.after(i, seconds)
    # 100 steps: 96 left x 0.5 s = 48 s saved > 2 x 9.5 s; 20 steps: 8 s < 19 s
    assert choice.compiled is keep and (module._compiled_call_impl is not None) is keep
    assert choice.report["compile_seconds"] == 9.5 and choice.report["compiled"] is keep


def test_choices_without_measuring():
    m = torch.nn.Linear(2, 2)
    assert CompileChoice(True, m, 10).compiled and m._compiled_call_impl is not None
    m2 = torch.nn.Linear(2, 2)
    assert not CompileChoice(False, m2, 10).compiled and m2._compiled_call_impl is None
    short = CompileChoice("auto", torch.nn.Linear(2, 2), 3)
    assert short.report["compiled"] is False
    with pytest.raises(ValueError, match="compile"):
        CompileChoice("yes", m, 10)


@pytest.mark.slow
def test_compiled_training_ends_where_eager_training_does(st_data, base_ckpt, tmp_path):
    runs = {}
    for setting in ("false", "true"):
        args = overrides(st_data, tmp_path / setting, init_from=base_ckpt, max_steps=3, name="c", compile=setting)
        final = train(TrainConfig.from_yaml(recipe("stage3_instruct"), args))
        losses = [json.loads(line)["loss"] for line in (final.parent / "metrics.jsonl").read_text().splitlines()
                  if '"train"' in line]
        runs[setting] = losses, load_file(str(final / "model.safetensors"))
        summary = json.loads((final.parent / "summary.json").read_text())
        assert summary["compile"] == setting
    (eager_losses, eager_w), (comp_losses, comp_w) = runs["false"], runs["true"]
    assert len(eager_losses) == 3 and max(abs(a - b) for a, b in zip(eager_losses, comp_losses)) < 1e-5
    assert max((eager_w[k] - comp_w[k]).abs().max().item() for k in eager_w) < 1e-5


@pytest.mark.slow
def test_compiled_static_cache_decoding_gives_the_eager_tokens():
    from mmgpt.model import MMGPT
    from tests.conftest import make_image

    torch.manual_seed(0)
    model = MMGPT.from_config("tiny").eval()
    head = torch.nn.Linear(model.decoder.config.hidden_size, model.decoder.config.vocab_size, bias=False)
    torch.nn.init.normal_(head.weight, std=2.0)  # answers that vary token by token
    model.decoder.config.tie_word_embeddings = False
    model.decoder.set_output_embeddings(head)
    prompts = [[{"role": "user", "content": [{"type": "image", "image": make_image(i)},
                                             {"type": "text", "text": "what is it?" * (i + 1)}]}] for i in range(3)]
    eager = model.generate(prompts, max_new_tokens=10, return_ids=True)
    assert not hasattr(model.decoder, "_compiled_call")
    compiled = model.generate(prompts, max_new_tokens=10, return_ids=True, compile=True)
    assert hasattr(model.decoder, "_compiled_call")  # transformers compiled the decode step
    assert compiled == eager and len({t for r in eager for t in r}) > 3
