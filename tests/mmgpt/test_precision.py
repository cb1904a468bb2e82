"""precision: auto measures each dtype here and takes the faster; the measurement is cached per machine."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mmgpt import precision as P

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MMGPT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(P, "_MEMO", {})
    return tmp_path / "cache" / "precision.json"


def fake_probe(bf16_rate: float, fp32_rate: float = 100e9, calls: list | None = None):
    def probe(device, dtype, tokens, width, ffn, repeats=3):
        if calls is not None:
            calls.append((dtype, tokens, width, ffn))
        return bf16_rate if dtype == torch.bfloat16 else fp32_rate

    return probe


def test_auto_takes_fp32_when_the_probe_says_bf16_is_slower(monkeypatch):
    monkeypatch.setattr(P, "probe_rate", fake_probe(bf16_rate=50e9))
    assert P.resolve_precision("auto", CPU, width=64, ffn=128, tokens=256) is None


def test_auto_takes_bf16_when_the_probe_says_it_is_faster(monkeypatch):
    monkeypatch.setattr(P, "probe_rate", fake_probe(bf16_rate=400e9))
    assert P.resolve_precision("auto", CPU, width=64, ffn=128, tokens=256) is torch.bfloat16


def test_explicit_precision_is_not_probed(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("probed")

    monkeypatch.setattr(P, "probe_rate", boom)
    assert P.resolve_precision("fp32", CPU) is None
    assert P.resolve_precision("bf16", CPU) is torch.bfloat16
    with pytest.raises(ValueError, match="precision must be one of"):
        P.resolve_precision("fp16", CPU)


def test_probe_runs_once_per_shape_and_is_read_back_from_the_cache_file(monkeypatch, fresh_cache):
    calls: list = []
    monkeypatch.setattr(P, "probe_rate", fake_probe(bf16_rate=50e9, calls=calls))
    P.resolve_precision("auto", CPU, width=64, ffn=128, tokens=256)
    assert len(calls) == 2  # one probe per candidate dtype, at the model's widths
    assert {c[1:] for c in calls} == {(256, 64, 128)}
    P.resolve_precision("auto", CPU, width=64, ffn=128, tokens=256)
    assert len(calls) == 2  # memoised in this process
    monkeypatch.setattr(P, "_MEMO", {})
    assert P.resolve_precision("auto", CPU, width=64, ffn=128, tokens=256) is None
    assert len(calls) == 2  # read from the file by a "new process"
    entry = json.loads(fresh_cache.read_text())
    (key, rates), = entry.items()
    assert torch.__version__ in key and "256x64x128" in key and rates == {"fp32": 100e9, "bf16": 50e9}
    P.resolve_precision("auto", CPU, width=64, ffn=256, tokens=256)  # another shape is probed anew
    assert len(calls) == 4


def test_a_damaged_cache_file_is_probed_over(monkeypatch, fresh_cache):
    fresh_cache.parent.mkdir(parents=True)
    fresh_cache.write_text("{not json")
    monkeypatch.setattr(P, "probe_rate", fake_probe(bf16_rate=400e9))
    assert P.resolve_precision("auto", CPU, width=64, ffn=128, tokens=256) is torch.bfloat16
    assert len(json.loads(fresh_cache.read_text())) == 1


def test_real_probe_measures_both_dtypes_on_this_cpu():
    rates = P.measure(CPU, width=64, ffn=128, tokens=256, use_cache=False)
    assert set(rates) == {"fp32", "bf16"}
    assert all(math.isfinite(r) and r > 0 for r in rates.values())
    assert P.choose(rates) == max(rates, key=rates.get)
    assert P.choose({"fp32": 1.0, "bf16": 1.0}) == "fp32"  # a tie keeps full precision
