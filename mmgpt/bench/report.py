"""Ratios, targets and the report: a printed table, ``bench.json`` and the ``BENCHMARKS.md`` section.

Every ratio is "higher is better" for mmgpt (or for the faster path): a time ratio is
``peer seconds / mmgpt seconds``, a rate ratio ``mmgpt rate / peer rate``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

SECTION = "## mmgpt bench"

# measurement id -> (target label, minimum ratio); the ratio each is checked on is built in rows().
TARGETS = {
    "train_fp32": ("train step >= 1.0x Llava (fp32)", 1.0),
    "train_bf16": ("train step >= 1.0x Llava (bf16)", 1.0),
    "decode_b1": ("decode tokens/s >= 1.0x Llava at batch 1", 1.0),
    "decode_b8_vs_b1": ("batch-8 decode throughput >= 4x batch 1", 4.0),
    "train_compiled": ("compiled train step >= 1.3x Llava eager (fp32)", 1.3),
    "decode_b1_compiled": ("compiled decode tokens/s >= 1.5x Llava eager at batch 1", 1.5),
    "decode_b8_vs_b1_compiled": ("compiled batch-8 decode throughput >= 4x compiled batch 1", 4.0),
    "packing": ("useful tokens/s packed >= 1.5x padded", 1.5),
    "feature_cache": ("cached stage-1 epoch >= 3x faster", 3.0),
    "audio_frontend": ("batched log-mel >= 5x librosa", 5.0),
    "serve": ("mmgpt serve, 16 concurrent: batched >= 3x one at a time", 3.0),
    "mfu_bf16": ("MFU >= 60% of bf16 peak", 0.60),
    "mfu_fp32": ("MFU >= 80% of fp32 peak", 0.80),
}


def _med(result: dict | None, side: str, key: str) -> float:
    try:
        return float(result["sides"][side]["median"][key])
    except (KeyError, TypeError):
        return float("nan")


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else float("nan")


def _row(rid: str | None, what: str, a: str, b: str, ratio: float, note: str = "") -> dict[str, Any]:
    label, minimum = TARGETS.get(rid, (None, None)) if rid else (None, None)
    met = None if minimum is None or math.isnan(ratio) else ratio >= minimum
    return {"id": rid, "what": what, "a": a, "b": b, "ratio": ratio, "target": label, "minimum": minimum,
            "met": met, "note": note}


def _fmt_s(x: float) -> str:
    if math.isnan(x):
        return "n/a"
    return f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s"


def _fmt_rate(x: float, unit: str) -> str:
    return "n/a" if math.isnan(x) else f"{x:,.0f} {unit}"


def rows(results: dict[str, dict]) -> list[dict[str, Any]]:
    """The report's rows from the children's results (keyed by measurement id)."""
    out = [row for part in (_train_rows, _generate_rows, _data_rows, _mfu_rows) for row in part(results)]
    return [r for r in out if not math.isnan(r["ratio"])]  # measurements not run (--only) or failed


def _train_rows(results: dict[str, dict]) -> list[dict[str, Any]]:
    out = []
    for prec in ("fp32", "bf16", "compiled"):
        r = results.get(f"train_{prec}")
        mm, ll = _med(r, "mmgpt", "seconds"), _med(r, "llava", "seconds")
        info = (r or {}).get("sides", {}).get("mmgpt", {}).get("info", {})
        tok = info.get("tokens_per_step", float("nan"))
        what = "fp32, mmgpt compiled vs Llava eager" if prec == "compiled" else prec
        out.append(_row(f"train_{prec}", f"train step {what}, {info.get('preset', '?')} B={info.get('rows', '?')} "
                        f"T={info.get('length', '?')} (s/step; tokens/s)", f"{_fmt_s(mm)}; {_fmt_rate(tok / mm, 'tok/s')}",
                        f"{_fmt_s(ll)}; {_fmt_rate(tok / ll, 'tok/s')}", _ratio(ll, mm)))
    return out


def _generate_rows(results: dict[str, dict]) -> list[dict[str, Any]]:
    out = []
    g1, g8 = results.get("generate_b1"), results.get("generate_b8")
    for b, g in ((1, g1), (8, g8)):
        mm, ll = _med(g, "mmgpt", "prefill_s"), _med(g, "llava", "prefill_s")
        out.append(_row(None, f"prefill latency, batch {b}", _fmt_s(mm), _fmt_s(ll), _ratio(ll, mm),
                        "mmgpt's time includes its processor"))
        mm, ll = _med(g, "mmgpt", "decode_tokens_per_s"), _med(g, "llava", "decode_tokens_per_s")
        out.append(_row("decode_b1" if b == 1 else None, f"decode tokens/s, batch {b}", _fmt_rate(mm, "tok/s"),
                        _fmt_rate(ll, "tok/s"), _ratio(mm, ll)))
    mm1, mm8 = _med(g1, "mmgpt", "decode_tokens_per_s"), _med(g8, "mmgpt", "decode_tokens_per_s")
    ll1, ll8 = _med(g1, "llava", "decode_tokens_per_s"), _med(g8, "llava", "decode_tokens_per_s")
    out.append(_row("decode_b8_vs_b1", "decode throughput batch 8 / batch 1 (A: mmgpt, B: Llava)",
                    f"{_ratio(mm8, mm1):.2f}x", f"{_ratio(ll8, ll1):.2f}x", _ratio(mm8, mm1)))
    c1, c8 = results.get("generate_b1_compiled"), results.get("generate_b8_compiled")
    for b, g in ((1, c1), (8, c8)):
        mm, ll = _med(g, "mmgpt", "decode_tokens_per_s"), _med(g, "llava", "decode_tokens_per_s")
        out.append(_row("decode_b1_compiled" if b == 1 else None,
                        f"decode tokens/s, batch {b}, mmgpt compiled (static cache) vs Llava eager",
                        _fmt_rate(mm, "tok/s"), _fmt_rate(ll, "tok/s"), _ratio(mm, ll)))
    cm1, cm8 = _med(c1, "mmgpt", "decode_tokens_per_s"), _med(c8, "mmgpt", "decode_tokens_per_s")
    cl1, cl8 = _med(c1, "llava", "decode_tokens_per_s"), _med(c8, "llava", "decode_tokens_per_s")
    out.append(_row("decode_b8_vs_b1_compiled", "compiled decode throughput batch 8 / batch 1 (A: mmgpt compiled, "
                    "B: Llava eager)", f"{_ratio(cm8, cm1):.2f}x", f"{_ratio(cl8, cl1):.2f}x", _ratio(cm8, cm1)))
    return out


def _data_rows(results: dict[str, dict]) -> list[dict[str, Any]]:
    out = []
    p = results.get("packing")
    rate = {s: _ratio(_med(p, s, "useful_tokens"), _med(p, s, "seconds")) for s in ("packed", "padded", "grouped")}
    pad = {s: _med(p, s, "padding_fraction") for s in rate}
    for s in ("packed", "grouped"):
        out.append(_row("packing" if s == "packed" else None, f"useful tokens/s, {s} vs padded (padding fraction)",
                        f"{_fmt_rate(rate[s], 'tok/s')} ({pad[s]:.0%})", f"{_fmt_rate(rate['padded'], 'tok/s')} "
                        f"({pad['padded']:.0%})", _ratio(rate[s], rate["padded"])))
    c = results.get("feature_cache")
    cached, fly = _med(c, "cached", "seconds"), _med(c, "on_the_fly", "seconds")
    enc = _med(c, "on_the_fly", "encoder_s")
    bound = _ratio(fly, fly - enc)
    out.append(_row("feature_cache", "stage-1 epoch, cached features vs on the fly", _fmt_s(cached), _fmt_s(fly),
                    _ratio(fly, cached), "" if math.isnan(bound) else
                    f"encoder forwards are {enc / fly:.0%} of the uncached epoch (saving only them: {bound:.2f}x); "
                    "a hit also skips decoding the file; the rest is the decoder's forward and backward"))
    w = results.get("loader")
    w2, w0 = _med(w, "workers_2", "seconds"), _med(w, "workers_0", "seconds")
    info = (w or {}).get("sides", {}).get("workers_2", {}).get("info", {})
    steps = info.get("steps", float("nan"))
    out.append(_row(None, f"train steps/s, batches built in 2 data workers vs in the training process "
                    f"({info.get('image_size', '?')} px PNGs, no feature cache)", f"{steps / w2:.2f} steps/s",
                    f"{steps / w0:.2f} steps/s", _ratio(w0, w2),
                    "bitwise the same batches; on a GPU host the workers decode while the GPU computes"))
    out += _scale_rows(results.get("scale"))
    s = results.get("serve")
    rb, r1 = _med(s, "batched", "requests_per_s"), _med(s, "one_at_a_time", "requests_per_s")
    preset = (s or {}).get("sides", {}).get("batched", {}).get("info", {}).get("preset", "?")
    out.append(_row("serve", f"mmgpt serve, {preset} preset: requests/s with 16 concurrent (image + question, "
                    "16 tokens)", f"{rb:.2f} req/s", f"{r1:.2f} req/s", _ratio(rb, r1),
                    "B: the same server with max_batch=1"))
    a = results.get("audio_frontend")
    ta, lr = _med(a, "torchaudio", "seconds"), _med(a, "librosa", "seconds")
    diff = (a or {}).get("sides", {}).get("torchaudio", {}).get("info", {}).get("max_abs_diff_vs_librosa")
    out.append(_row("audio_frontend", "log-mel, mmgpt LogMel (one batch) vs librosa (per clip)", _fmt_s(ta),
                    _fmt_s(lr), _ratio(lr, ta), f"max abs diff {diff:.1e}" if diff is not None else ""))
    return out


def _scale_rows(result: dict | None) -> list[dict[str, Any]]:
    """Peak RSS and wall time of building + 2 steps, 100x the rows vs 1x, JSONL and tar."""
    out = []
    for fmt, what in (("jsonl", "JSONL rows"), ("tar", "WebDataset keys (plain .tar)"),
                      ("tgz", "WebDataset keys (8 .tar.gz, streamed)")):
        sides = (result or {}).get("sides", {})
        big, small = sides.get(f"{fmt}_large", {}), sides.get(f"{fmt}_small", {})
        t_big, t_small = _med(result, f"{fmt}_large", "seconds"), _med(result, f"{fmt}_small", "seconds")
        m_big, m_small = big.get("peak_mem_mb", float("nan")), small.get("peak_mem_mb", float("nan"))
        n_big, n_small = big.get("info", {}).get("rows", "?"), small.get("info", {}).get("rows", "?")
        growth, later = m_big - m_small, t_big - t_small
        ok = "met" if growth < 100 and later < 2 else "MISSED"
        out.append(_row(None, f"build + 2 steps of stage 3, {n_big:,} vs {n_small:,} {what} (peak RSS; wall)"
                        if isinstance(n_big, int) else f"build + 2 steps, {what}",
                        f"{m_big:,.0f} MiB; {_fmt_s(t_big)}", f"{m_small:,.0f} MiB; {_fmt_s(t_small)}",
                        _ratio(t_small, t_big), f"{ok}: +{growth:,.0f} MiB (target < 100) and +{later:.2f} s "
                        "(target < 2) for 100x the rows"))
    return out


def _mfu_rows(results: dict[str, dict]) -> list[dict[str, Any]]:
    out = []
    auto = (results.get("mfu") or {}).get("auto")
    if auto:
        rates, chosen = auto["probe_flops"], auto["chosen"]
        other = next((k for k in rates if k != chosen), chosen)
        out.append(_row(None, f"precision auto: the probe's choice for the {auto['preset']} train step "
                        f"(Linear fwd+bwd, GFLOP/s)", f"{chosen} {rates[chosen] / 1e9:,.0f}",
                        f"{other} {rates[other] / 1e9:,.0f}", _ratio(rates[chosen], rates[other]),
                        f"`precision: auto` trains in {chosen} here; each MFU row below is against its own dtype's peak"))
    for prec in ("bf16", "fp32"):
        m = mfu(results.get("mfu"), prec)
        preset = ((results.get("mfu") or {}).get("sides", {}).get(prec, {}).get("info", {})).get("preset", "?")
        out.append(_row(f"mfu_{prec}", f"MFU {prec}, {preset} preset train step (model FLOP/s / peak)",
                        _fmt_rate(m["achieved"] / 1e9, "GFLOP/s"), _fmt_rate(m["peak"] / 1e9, "GFLOP/s peak"),
                        m["mfu"], f"6NT count: {m['mfu_6nt']:.0%}" if not math.isnan(m["mfu_6nt"]) else ""))
    return out


def mfu(result: dict | None, precision: str) -> dict[str, float]:
    """Achieved model FLOP/s, peak, MFU and the 6NT variant for ``precision``."""
    nan = float("nan")
    if not result or "sides" not in result:
        return {"achieved": nan, "peak": nan, "mfu": nan, "mfu_6nt": nan}
    info = result["sides"][precision]["info"]
    sec = _med(result, precision, "seconds")
    peak = result["peaks"][precision]["peak"]
    achieved = info["model_flops_per_step"] / sec
    return {"achieved": achieved, "peak": peak, "mfu": achieved / peak,
            "mfu_6nt": info["six_n_t_flops_per_step"] / sec / peak}


def equal_size_checks(results: dict[str, dict]) -> list[dict[str, Any]]:
    """Parameter and token counts of both models in every A/B measurement (the 1 % rule)."""
    checks = []
    for rid, r in results.items():
        sides = (r or {}).get("sides", {})
        if not {"mmgpt", "llava"} <= set(sides):
            continue
        a, b = sides["mmgpt"]["info"], sides["llava"]["info"]
        rel = abs(a["params"] - b["params"]) / max(a["params"], b["params"])
        tok_key = "tokens_per_step" if "tokens_per_step" in a else "prompt_tokens"
        checks.append({"id": rid, "params_mmgpt": a["params"], "params_llava": b["params"], "params_rel_diff": rel,
                       "tokens_key": tok_key, "tokens_mmgpt": a.get(tok_key), "tokens_llava": b.get(tok_key),
                       "ok": rel <= 0.01 and a.get(tok_key) == b.get(tok_key)})
    return checks


def memory_rows(results: dict[str, dict]) -> list[dict[str, Any]]:
    """Peak memory of every measured path."""
    out = []
    for rid, r in results.items():
        for side, s in (r or {}).get("sides", {}).items():
            out.append({"id": rid, "side": side, "peak_mem_mb": s.get("peak_mem_mb"), "scope": s.get("mem_scope"),
                        "baseline_rss_mb": s.get("baseline_rss_mb")})
    return out


def _status(met: bool | None) -> str:
    return "-" if met is None else ("met" if met else "MISSED")


def text_table(report: dict[str, Any]) -> str:
    """The table printed at the end of a run."""
    lines = [f"{'measurement':<62} {'A (mmgpt / faster path)':>28} {'B (peer / baseline)':>28} {'ratio':>7}  target"]
    for r in report["rows"]:
        ratio = "n/a" if math.isnan(r["ratio"]) else (f"{r['ratio']:.0%}" if r["id"] and r["id"].startswith("mfu")
                                                      else f"{r['ratio']:.2f}x")
        target = f"{_status(r['met'])} ({r['target']})" if r["target"] else ""
        lines.append(f"{r['what'][:62]:<62} {r['a']:>28} {r['b']:>28} {ratio:>7}  {target}")
    for c in report["equal_size"]:
        lines.append(f"  {c['id']}: params {c['params_mmgpt']:,} vs {c['params_llava']:,} "
                     f"({c['params_rel_diff']:.3%}), {c['tokens_key']} {c['tokens_mmgpt']} vs {c['tokens_llava']}")
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    """The ``## mmgpt bench`` section of BENCHMARKS.md."""
    env = report["env"]
    out = [SECTION, "", f"Command: `{env['command']}`  ", f"Machine: {env['machine']}  ",
           f"Software: {env['software']}  ", f"Run: {env['started']}, {env['wall_s']:.0f} s; {env['load_note']}", "",
           "A is mmgpt (or the faster path), B the peer (transformers' `LlavaForConditionalGeneration` at equal "
           "size) or the baseline path. Ratios are higher-is-better for A: time ratios are B / A, rate ratios "
           f"A / B. Median of {env['repeats']} alternating runs after {env['warmup']} warm-up run(s) per side, "
           f"{env['threads']} threads, seed {env['seed']}, one process per measurement pair.", "",
           "| measurement | A | B | ratio | target |", "|---|---|---|---|---|"]
    for r in report["rows"]:
        ratio = "n/a" if math.isnan(r["ratio"]) else (f"{r['ratio']:.0%}" if r["id"] and r["id"].startswith("mfu")
                                                      else f"{r['ratio']:.2f}x")
        target = f"**{_status(r['met'])}**: {r['target']}" if r["target"] else (r["note"] or "")
        if r["target"] and r["note"]:
            target += f" ({r['note']})"
        out.append(f"| {r['what']} | {r['a']} | {r['b']} | {ratio} | {target} |")
    out += ["", "Equal size (A/B pairs): " + "; ".join(
        f"{c['id']} params {c['params_mmgpt']:,} vs {c['params_llava']:,} ({c['params_rel_diff']:.2%}), "
        f"{c['tokens_key']} {c['tokens_mmgpt']} vs {c['tokens_llava']}" for c in report["equal_size"]), "",
        "Peak memory (MiB; " + report["memory_scope"] + "):", "", "| path | peak | baseline (interpreter + imports) |",
        "|---|---|---|"]
    for m in report["memory"]:
        base = f"{m['baseline_rss_mb']:.0f}" if m.get("baseline_rss_mb") else "-"
        peak = f"{m['peak_mem_mb']:.0f}" if m.get("peak_mem_mb") is not None else "n/a"
        out.append(f"| {m['id']} / {m['side']} | {peak} | {base} |")
    if report.get("errors"):
        out += ["", "Errors: " + "; ".join(f"{k}: {v}" for k, v in report["errors"].items())]
    out += ["", closing_note(report)]
    notes = report.get("notes") or []
    if notes:
        out += ["", *notes]
    return "\n".join(out) + "\n"


def closing_note(report: dict[str, Any]) -> str:
    """One paragraph quoting every target's ratio, met first."""
    def fmt(r):
        ratio = f"{r['ratio']:.0%}" if r["id"].startswith("mfu") else f"{r['ratio']:.2f}x"
        return f"{r['target']}: {ratio}"

    targets = [r for r in report["rows"] if r["target"]]
    met = [fmt(r) for r in targets if r["met"]]
    missed = [fmt(r) for r in targets if r["met"] is False]
    seen = {r["id"] for r in targets}
    unknown = [label for rid, (label, _) in TARGETS.items() if rid not in seen]
    text = f"**Closing note.** {len(met)} of {len(TARGETS)} targets met"
    text += (": " + "; ".join(met) + "." if met else ".")
    if missed:
        text += " Missed: " + "; ".join(missed) + "."
    if unknown:
        text += " Not measured: " + "; ".join(unknown) + "."
    return text


def write_section(path: str | Path, section: str) -> None:
    """Put ``section`` into ``path`` in place of an existing ``## mmgpt bench`` section (up to the
    next ``## `` heading), or append it; the rest of the file is kept as it is."""
    path = Path(path)
    text = path.read_text() if path.is_file() else "# Benchmarks\n\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(new)
    tmp.replace(path)
