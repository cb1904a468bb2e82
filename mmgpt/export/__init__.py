"""``mmgpt export MODEL OUT --format FORMAT``: a trained mmgpt model as a folder other tools load.

Formats:

* ``llava``: transformers' ``LlavaForConditionalGeneration`` (:mod:`mmgpt.export.llava`), for an
  image+text model whose parts map one to one (the ``llava`` preset trains one). Plain
  ``transformers`` loads it with ``LlavaForConditionalGeneration.from_pretrained`` and
  ``AutoProcessor.from_pretrained(OUT, backend="pil")``; no mmgpt import.
* ``hf``: every mmgpt model (images, audio, any adapter) as transformers classes of
  ``model_type: "mmgpt"`` (:mod:`mmgpt.export.hf`, :mod:`mmgpt.hf`). After ``import mmgpt``,
  ``AutoModelForImageTextToText.from_pretrained(OUT)`` and ``AutoProcessor.from_pretrained(OUT)``
  load it; ``generate``, ``save_pretrained`` and PEFT work on it.

In both, a special token a user types (``<|image_pad|>``, ``<|im_start|>``) stays plain text in
the exported chat template, as in mmgpt's processor.

The folder is written atomically (a kill leaves no half export) and carries a ``README.md``
model card: the model's parts, how it was trained (the run's ``summary.json``) and its eval
table (a pipeline's ``eval/report.md``) when they lie beside ``MODEL``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

FORMATS = ("llava", "hf")


def model_card(model, source: Path, fmt: str) -> str:
    """The README.md of an export: parts, training summary and eval table found beside ``source``."""
    cfg = model.config
    params = sum(p.numel() for p in model.parameters())
    lines = [f"# {source.resolve().parent.name if source.name == 'final' else source.name}", "",
             f"A multimodal model trained with mmgpt and exported as `{fmt}` ({params:,} parameters).", "",
             "| part | settings |", "|---|---|"]
    for modality in cfg.modalities:
        enc = cfg.encoder_config(modality)
        lines.append(f"| {modality} encoder | {json.dumps({k: v for k, v in vars(enc).items() if v and k != 'hf_config'})} |")
        lines.append(f"| {modality} adapter | {json.dumps(vars(cfg.adapters[modality]))} |")
    dec = model.decoder.config
    lines.append(f"| decoder | {type(model.decoder).__name__}: {dec.num_hidden_layers} layers, width {dec.hidden_size}, "
                 f"vocabulary {dec.vocab_size} |")
    lines.append(f"| context | {cfg.max_length} tokens |")
    run = source.resolve().parent
    summary = run / "summary.json"
    if summary.is_file():
        s = json.loads(summary.read_text())
        lines += ["", "## Training", "", f"Last stage `{s.get('stage')}` ({s.get('name')}): {s.get('steps')} steps, "
                  f"final loss {s.get('final_loss')}."]
    for report in (run / "eval" / "report.md", run.parent / "eval" / "report.md"):
        if report.is_file():
            lines += ["", "## Evaluation (held out)", "", report.read_text().strip()]
            break
    return "\n".join(lines) + "\n"


def export(model_dir: str | Path, out: str | Path, fmt: str = "llava") -> Path:
    """Export the mmgpt model folder ``model_dir`` to ``out`` in ``fmt``.

    Raises:
        ExportError: the model does not map onto the format (naming the part).
        CheckpointError: ``model_dir`` is not a valid model folder.
        ConfigError: an unknown format.
    """
    from mmgpt.errors import ConfigError
    from mmgpt.model import load
    from mmgpt.safe_io import atomic_dir

    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    from mmgpt.export import hf, llava

    writer = {"llava": llava, "hf": hf}[fmt]
    model = load(model_dir).eval()
    if fmt == "llava":
        llava.check(model)  # before anything is written
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "config.json").is_file():
        raise ConfigError(f"{out} exists and is not an earlier export; name a new folder (it is replaced whole)")
    with atomic_dir(out) as tmp:
        writer.export(model, tmp)
        (tmp / "README.md").write_text(model_card(model, Path(model_dir), fmt))
    return out


def add_cli(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0]
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "\n\n".join(__doc__.split("\n\n")[1:])
    parser.add_argument("model", help="an mmgpt model folder (runs/<name>/final)")
    parser.add_argument("out", help="the folder to write")
    parser.add_argument("--format", default="llava", choices=FORMATS,
                        help="llava (image+text models that map onto Llava; loads without mmgpt) or hf (every "
                             "model; loads after `import mmgpt`); default llava")

    def run(args: argparse.Namespace) -> int:
        out = export(args.model, args.out, args.format)
        how = {"llava": f"LlavaForConditionalGeneration.from_pretrained({str(out)!r})",
               "hf": f"import mmgpt; AutoModelForImageTextToText.from_pretrained({str(out)!r})"}[args.format]
        print(f"wrote {out} ({args.format}); load it with transformers: {how}")
        return 0

    parser.set_defaults(run=run)
