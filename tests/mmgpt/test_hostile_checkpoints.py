"""A checkpoint is a file a stranger may hand us: its config cannot name files or describe an
impossible model, its manifest must be confined and complete, its weights must be what the
config says (no silent casts). Every case is a ``CheckpointError`` naming what is wrong,
written here as an attacker would: the file edited and the manifest rewritten to match."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mmgpt.errors import CheckpointError, ConfigError
from mmgpt.model import MMGPT, load
from mmgpt.safe_io import MANIFEST, clean_stale, recover, tidy, verify_manifest, write_manifest


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_config) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "model"
    MMGPT(tiny_config).save_pretrained(path)
    return path


def tampered(saved: Path, tmp_path: Path, edit_config=None, edit_weights=None) -> Path:
    """A copy of ``saved`` changed by the edits, its manifest rewritten to match."""
    out = tmp_path / "bad"
    shutil.copytree(saved, out)
    if edit_config:
        cfg = json.loads((out / "config.json").read_text())
        edit_config(cfg)
        (out / "config.json").write_text(json.dumps(cfg))
    if edit_weights:
        tensors = load_file(str(out / "model.safetensors"))
        edit_weights(tensors)
        save_file(tensors, str(out / "model.safetensors"))
    (out / MANIFEST).unlink()
    write_manifest(out)
    return out


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["vision"]["timm_kwargs"].update(checkpoint_path="/etc/hostname"), "timm_kwargs.checkpoint_path"),
    (lambda c: c["vision"]["timm_kwargs"].update(pretrained_cfg_overlay={"file": "/etc/hostname"}),
     "timm_kwargs.pretrained_cfg_overlay"),
    (lambda c: c["vision"].update(pretrained_path="/tmp/weights.pth"), "not a .safetensors file"),
    (lambda c: c["decoder"].update(num_heads=0), "decoder.num_heads must be an integer from 1"),
    (lambda c: c["decoder"]["hf_config"].update(hidden_size=-64), "decoder.hf_config.hidden_size"),
    (lambda c: c["decoder"]["hf_config"].update(num_attention_heads=5), "divisible by"),
    (lambda c: c["audio"].update(d_model=10**9), "audio.d_model must be an integer"),
    (lambda c: c["decoder"]["hf_config"].update(hidden_size=40_000, intermediate_size=400_000,
                                                num_attention_heads=8, num_key_value_heads=8, head_dim=5000),
     "more than this machine's"),
    (lambda c: c.update(max_length=10**12), "max_length must be an integer"),
])
def test_a_config_cannot_name_files_or_describe_an_impossible_model(saved, tmp_path, edit, message):
    with pytest.raises(CheckpointError, match=message):
        load(tampered(saved, tmp_path, edit_config=edit))


def test_weights_of_another_dtype_or_shape_are_refused_not_cast(saved, tmp_path):
    def half(t):
        for k in t:
            t[k] = t[k].half() if t[k].is_floating_point() else t[k]

    with pytest.raises(CheckpointError, match=r"is F16 .* the model's is torch.float32"):
        load(tampered(saved, tmp_path, edit_weights=half))
    name = next(k for k in load_file(str(saved / "model.safetensors")) if k.endswith("norm.weight"))

    def longer(t):
        t[name] = torch.ones(t[name].shape[0] + 1)

    shutil.rmtree(tmp_path / "bad")
    with pytest.raises(CheckpointError, match=f"{name} is F32 \\[{load(saved).state_dict()[name].shape[0] + 1}\\]"):
        load(tampered(saved, tmp_path, edit_weights=longer))


@pytest.mark.parametrize("files, message", [
    ({}, "non-empty mapping"),
    ([], "non-empty mapping"),
    ({"config.json": {}}, "must be {size: bytes, sha256: 64 hex digits}"),
    ({"config.json": {"size": "12", "sha256": "0" * 64}}, "must be {size"),
    ({"../../etc/hostname": {"size": 1, "sha256": "0" * 64}}, "not a file inside"),
    ({"/etc/hostname": {"size": 1, "sha256": "0" * 64}}, "not a file inside"),
])
def test_a_manifest_must_be_well_formed_and_confined(saved, tmp_path, files, message):
    bad = tmp_path / "bad"
    shutil.copytree(saved, bad)
    (bad / MANIFEST).write_text(json.dumps({"format": "mmgpt", "version": 1, "files": files}))
    with pytest.raises(CheckpointError, match=message):
        load(bad)


def test_a_manifest_must_list_every_file_and_the_required_ones(saved, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(saved, bad)
    (bad / "added_tokens.json").write_text("{}")  # a file the tokenizer would read, slipped in
    with pytest.raises(CheckpointError, match=r"does not list: \['added_tokens.json'\]"):
        load(bad)
    (bad / "added_tokens.json").unlink()
    (bad / "README.md").write_text("# a model card may be added")
    load(bad)
    entries = json.loads((bad / MANIFEST).read_text())
    del entries["files"]["model.safetensors"]
    (bad / MANIFEST).write_text(json.dumps(entries))
    with pytest.raises(CheckpointError, match=r"does not list model.safetensors"):
        verify_manifest(bad, required=("config.json", "model.safetensors"))


def test_config_values_are_checked_when_presets_are_read_too():
    from mmgpt.config import MMGPTConfig

    with pytest.raises(ConfigError, match=r"vision.timm_kwargs.checkpoint_path"):
        MMGPTConfig.from_yaml("tiny", ["vision.timm_kwargs.checkpoint_path=/x.pth"])
    with pytest.raises(ConfigError, match=r"decoder.num_kv_heads"):
        MMGPTConfig.from_yaml("tiny", ["decoder.num_kv_heads=3"])
    MMGPTConfig.from_yaml("tiny", ["vision.timm_kwargs.drop_path_rate=0.1"])  # architecture arguments pass


def test_an_interrupted_replacement_is_recovered_and_dead_temporaries_removed(saved, tmp_path):
    final = tmp_path / "final"
    shutil.copytree(saved, final)
    # killed between the two renames of a re-save: the old version waits under .final.old-*
    final.rename(tmp_path / ".final.old-1234abcd")
    (tmp_path / ".final.tmp-999999999-deadbeef").mkdir()  # a writer that no longer exists
    assert load(final) is not None and final.is_dir()  # load puts the old version back
    assert clean_stale(final) == [tmp_path / ".final.tmp-999999999-deadbeef"]
    assert not recover(final)
    final.rename(tmp_path / ".final.old-5678abcd")
    assert tidy(tmp_path) == [] and final.is_dir()


def test_convert_weights_reads_a_trusted_pickle_once_and_loads_it_as_safetensors(tmp_path):
    from mmgpt.cli import main

    state = {"state_dict": {"a.weight": torch.arange(6.0).reshape(2, 3), "b": {"c": torch.ones(2)}}}
    torch.save(state, tmp_path / "w.pth")
    assert main(["convert-weights", str(tmp_path / "w.pth"), str(tmp_path / "w.safetensors")]) == 0
    got = load_file(str(tmp_path / "w.safetensors"))
    assert torch.equal(got["a.weight"], torch.arange(6.0).reshape(2, 3)) and torch.equal(got["b.c"], torch.ones(2))

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    import pickle

    (tmp_path / "evil.pth").write_bytes(pickle.dumps(Evil()))
    assert main(["convert-weights", str(tmp_path / "evil.pth"), str(tmp_path / "e.safetensors")]) == 1
    assert not (tmp_path / "e.safetensors").exists()
