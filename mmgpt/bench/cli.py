"""``mmgpt bench``: run every measurement in its own child process, print ratios, write the report.

    mmgpt bench                      full run (~10-15 min on 2 CPU cores): BENCHMARKS.md + runs/bench/bench.json
    mmgpt bench --quick              tiny sizes, 1 repeat (< 1 min), report under runs/bench/
    mmgpt bench --only train,mfu     some measurements (ids or groups: train generate packing cache audio mfu)

Children are forked one at a time from a server process that has imported torch, transformers
and mmgpt once (``mmgpt.bench.worker``); with ``--start spawn`` each is a fresh interpreter.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mmgpt.bench import report as R

# id -> (measurement, args, repeats in a full run)
PLAN: dict[str, tuple[str, dict, int]] = {
    "train_fp32": ("train", {"precision": "fp32"}, 5),
    "train_bf16": ("train", {"precision": "bf16"}, 5),
    "train_compiled": ("train", {"precision": "fp32", "compile": True}, 5),
    "generate_b1": ("generate", {"batch": 1}, 5),
    "generate_b8": ("generate", {"batch": 8}, 5),
    "generate_b1_compiled": ("generate", {"batch": 1, "compile": True}, 5),
    "generate_b8_compiled": ("generate", {"batch": 8, "compile": True}, 5),
    "packing": ("packing", {}, 3),
    "feature_cache": ("feature_cache", {}, 3),
    "loader": ("loader", {}, 3),
    "scale": ("scale", {}, 3),
    "serve": ("serve", {}, 3),
    "audio_frontend": ("audio_frontend", {}, 7),
    "mfu": ("mfu", {}, 5),
}
GROUPS = {"train": ["train_fp32", "train_bf16"], "generate": ["generate_b1", "generate_b8"],
          "compiled": ["train_compiled", "generate_b1_compiled", "generate_b8_compiled"],
          "packing": ["packing"], "cache": ["feature_cache"], "loader": ["loader"], "scale": ["scale"], "serve": ["serve"],
          "audio": ["audio_frontend"],
          "mfu": ["mfu"]}


def add_cli(p: argparse.ArgumentParser) -> None:
    """Arguments of ``mmgpt bench``."""
    p.description = ("Benchmarks against transformers' Llava at equal size, and the speed-ups mmgpt claims "
                     "(packing, feature cache, batched log-mel, MFU). Prints ratios; writes JSON and markdown.")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = __doc__.split("\n\n")[1]
    p.add_argument("--quick", action="store_true", help="tiny sizes and 1 repeat: a smoke test of the whole bench")
    p.add_argument("--only", default=None, help=f"comma-separated ids or groups: {', '.join([*GROUPS, *PLAN])}")
    p.add_argument("--out", default="runs/bench", help="folder for bench.json and work files (default runs/bench)")
    p.add_argument("--markdown", default=None,
                   help="file whose '## mmgpt bench' section is (re)written (default BENCHMARKS.md; "
                        "OUT/BENCHMARKS.md with --quick); 'none' writes none")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per side (default 3-7 per measurement; 1 quick)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed runs per side before timing (default 2; 1 with --quick)")
    p.add_argument("--threads", type=int, default=0, help="torch / BLAS threads in every child (default: all cores)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run (auto: cuda if present)")
    p.add_argument("--memory", default="separate", choices=["separate", "shared"],
                   help="CPU peak memory: 'separate' runs each side alone in one more child (default); 'shared' "
                        "reports the pair child's peak for both sides")
    p.add_argument("--start", default="fork" if hasattr(os, "fork") else "spawn", choices=["fork", "spawn"],
                   help="how children start: forked from a preloaded server (default) or fresh interpreters")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--note", action="append", default=[], help="a line added under the table (repeatable)")
    p.set_defaults(run=run)


def select(only: str | None) -> list[str]:
    """Measurement ids named by ``--only`` (all when None).

    Raises:
        ValueError: an unknown id or group.
    """
    if not only:
        return list(PLAN)
    ids: list[str] = []
    for name in (x.strip() for x in only.split(",") if x.strip()):
        if name in GROUPS:
            ids += GROUPS[name]
        elif name in PLAN:
            ids.append(name)
        else:
            raise ValueError(f"bench: unknown measurement {name!r}; known: {', '.join([*GROUPS, *PLAN])}")
    return list(dict.fromkeys(ids))


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("bench: --device cuda but no CUDA device is available")
    return device


def machine(device: str) -> str:
    """CPU model and cores (``lscpu``), memory, and the GPU when one is used."""
    model = platform.processor() or platform.machine()
    cores = os.cpu_count()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        model = info.get("Model name", model).strip()
        per_socket = int(info.get("Core(s) per socket", "0").strip() or 0)
        sockets = int(info.get("Socket(s)", "1").strip() or 1)
        flags = info.get("Flags", "")
        extras = [f for f in ("avx512_bf16", "amx_bf16") if f in flags.split()]
        cores_txt = f"{per_socket * sockets or cores} cores, {cores} CPUs" + (f", {'/'.join(extras)}" if extras else "")
    except (OSError, subprocess.SubprocessError, ValueError):
        cores_txt = f"{cores} CPUs"
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        cores_txt += f", {mem:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    text = f"{model} ({cores_txt})"
    if device == "cuda":
        import torch

        text += f"; GPU {torch.cuda.get_device_name(0)}"
    return text


def software() -> str:
    import timm
    import torch
    import transformers

    return f"python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, timm {timm.__version__}"


class Children:
    """Runs specs in child processes: a fork server (one import, a fresh fork per spec) or spawn."""

    def __init__(self, start: str, env: dict[str, str], workdir: Path) -> None:
        self.start, self.env, self.workdir = start, env, workdir
        self.server: subprocess.Popen | None = None
        if start == "fork":
            self.server = subprocess.Popen([sys.executable, "-m", "mmgpt.bench.worker", "--serve"], env=env,
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
            line = self.server.stdout.readline()
            if not line or not json.loads(line).get("ready"):
                raise RuntimeError("bench: the worker server did not start")

    def run(self, spec: dict[str, Any]) -> dict[str, Any]:
        out = Path(spec["out"])
        out.unlink(missing_ok=True)
        if self.server is not None:
            self.server.stdin.write(json.dumps(spec) + "\n")
            self.server.stdin.flush()
            line = self.server.stdout.readline()
            if not line:
                raise RuntimeError("bench: the worker server died")
        else:
            path = self.workdir / f"{spec['id']}.spec.json"
            path.write_text(json.dumps(spec))
            subprocess.run([sys.executable, "-m", "mmgpt.bench.worker", str(path)], env=self.env, check=False)
        if not out.is_file():
            return {"id": spec["id"], "error": "the child wrote no result (killed, or out of memory?)"}
        return json.loads(out.read_text())

    def close(self) -> None:
        if self.server is not None:
            self.server.stdin.close()
            self.server.wait(timeout=60)


def command_line(args: argparse.Namespace) -> str:
    """The ``mmgpt bench`` command that reproduces this run (options that differ from the defaults)."""
    parts = ["mmgpt", "bench"]
    if args.quick:
        parts.append("--quick")
    for opt, default in (("only", None), ("out", "runs/bench"), ("markdown", None), ("repeats", None),
                         ("warmup", None), ("threads", 0), ("device", "auto"), ("memory", "separate"), ("seed", 0)):
        value = getattr(args, opt)
        if value != default:
            parts += [f"--{opt}", str(value)]
    return " ".join(shlex.quote(p) for p in parts)


def load_note() -> str:
    try:
        one, five, _ = os.getloadavg()
        return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs at the start"
    except OSError:
        return "load average unknown"


def run(args: argparse.Namespace) -> int:
    """Run the bench; 0 when every measurement produced a result (targets may be missed)."""
    try:
        ids = select(args.only)
        device = resolve_device(args.device)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    out = Path(args.out)
    work = (out / ("work-quick" if args.quick else "work")).resolve()  # children run elsewhere: absolute
    work.mkdir(parents=True, exist_ok=True)
    threads = args.threads or os.cpu_count() or 1
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false", PYTHONWARNINGS="ignore")
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # the trainer-based measurements pick CUDA whenever they see it
    started = datetime.datetime.now().isoformat(timespec="seconds")
    note = load_note()
    t0 = time.perf_counter()
    specs = [{"id": rid, "measurement": PLAN[rid][0], "args": PLAN[rid][1], "side": None,
              "out": str(work / f"{rid}.json"),
              "settings": {"quick": args.quick, "repeats": args.repeats or (1 if args.quick else PLAN[rid][2]),
                           "warmup": warmup, "threads": threads, "device": device, "seed": args.seed,
                           "workdir": str(work)}} for rid in ids]
    print(f"mmgpt bench: {len(specs)} measurements on {device}, {threads} threads"
          f"{' (quick)' if args.quick else ''}; {note}", flush=True)
    children = Children(args.start, env, work)
    try:
        results, errors = run_specs(children, specs, device == "cpu" and args.memory == "separate", work)
    finally:
        children.close()
    scope = ("CUDA max_memory_allocated per side" if device == "cuda" else
             "ru_maxrss of a child that ran the side alone, which includes the interpreter and imports"
             if args.memory == "separate" else "ru_maxrss of the pair's child, the max over its sides")
    report = {
        "env": {"command": command_line(args), "machine": machine(device), "software": software(), "device": device,
                "threads": threads, "repeats": args.repeats or ("1" if args.quick else "3-7 (per measurement)"),
                "warmup": warmup, "seed": args.seed, "quick": args.quick, "started": started,
                "wall_s": time.perf_counter() - t0, "load_note": note + "; " + load_note().replace("at the start", "at the end")},
        "rows": R.rows(results), "equal_size": R.equal_size_checks(results), "memory": R.memory_rows(results),
        "memory_scope": scope, "errors": errors, "notes": args.note, "results": results,
    }
    (out / "bench.json").write_text(json.dumps(report, indent=1, default=str))
    print(R.text_table(report))
    md = args.markdown or (str(out / "BENCHMARKS.md") if args.quick else "BENCHMARKS.md")
    if md.lower() != "none":
        R.write_section(md, R.markdown(report))
        print(f"wrote {out / 'bench.json'} and the '{R.SECTION}' section of {md}")
    return 1 if errors else 0


def run_specs(children: Children, specs: list[dict], separate_memory: bool,
              work: Path) -> tuple[dict[str, dict], dict[str, str]]:
    """Each spec in a child (and each side alone in one more, for its CPU peak memory);
    returns the results and the errors, both by measurement id."""
    results: dict[str, dict] = {}
    errors: dict[str, str] = {}
    for spec in specs:
        t = time.perf_counter()
        res = children.run(spec)
        if "error" in res:
            errors[spec["id"]] = res["error"]
            print(f"  {spec['id']}: ERROR {res['error']}", flush=True)
            if res.get("traceback"):
                print(res["traceback"], file=sys.stderr)
            continue
        for side in res["sides"] if separate_memory else ():
            mem = children.run({**spec, "id": f"{spec['id']}-{side}", "side": side,
                                "out": str(work / f"{spec['id']}-mem-{side}.json")})
            if "memory" in mem:
                res["sides"][side].update(peak_mem_mb=mem["memory"]["peak_mem_mb"],
                                          baseline_rss_mb=mem["memory"]["baseline_rss_mb"],
                                          mem_scope="ru_maxrss of a child that ran this side alone")
            else:
                errors[f"{spec['id']}-{side} memory"] = mem.get("error", "?")
        results[spec["id"]] = res
        print(f"  {spec['id']}: done in {time.perf_counter() - t:.1f} s", flush=True)
    return results, errors
