"""The training loop shared by every stage.

One step = ``grad_accum`` micro-batches per process; the loss is the sum of token losses
divided by the number of target tokens of the whole global batch (all micro-batches, all
processes), so accumulation and DDP give the gradient of one big batch. Stages differ only
in their data and loss (:class:`LMTask` for text / alignment / interleaved / instruction,
:class:`mmgpt.train.contrastive.ContrastiveData` for stage 0b) and in what is trainable.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path

import torch
from tqdm import tqdm

from mmgpt.config import MMGPTConfig, deep_merge, from_dict, read_yaml
from mmgpt.datasets.schema import Sample
from mmgpt.errors import ConfigError
from mmgpt.feature_cache import FeatureCache, encoder_fingerprint
from mmgpt.model import MMGPT
from mmgpt.precision import model_widths, resolve_precision
from mmgpt.tokenizer import train_bpe, with_prefix_space
from mmgpt.train import distributed
from mmgpt.train.config import TrainConfig
from mmgpt.train.contrastive import ContrastiveData, ContrastiveHeads, collate_pairs, contrastive_loss
from mmgpt.train.data import EncodedDataset, Schedule, load_samples, make_batch, to_device
from mmgpt.train.lora import apply_lora, merge_lora
from mmgpt.train.metrics import MetricsLog, plot_metrics
from mmgpt.train.optim import build_optimizer, lr_lambda
from mmgpt.train.resume import latest_checkpoint, load_training_checkpoint, save_training_checkpoint

log = logging.getLogger(__name__)


class ContrastiveModule(torch.nn.Module):
    """Model + heads behind one forward, so DDP sees the contrastive loss's parameters."""

    def __init__(self, model: MMGPT, heads: ContrastiveHeads) -> None:
        super().__init__()
        self.model, self.heads = model, heads

    def forward(self, batch: dict):
        return contrastive_loss(self.model, self.heads, batch)


def bpe_corpus(samples: list[Sample], prefix_space: bool) -> list[str]:
    """The text a tokenizer is trained on: each sample's text parts, one per line, written as
    the processor will encode them (with the prefix space when it is on)."""
    def part(text: str) -> str:
        return with_prefix_space(text) if prefix_space else text

    return ["\n".join(part(seg.text) for _, seg in s.segments if seg.type == "text") for s in samples]


def build_model(cfg: TrainConfig, samples: list[Sample], dist: distributed.Dist) -> MMGPT:
    """The stage's starting model: a previous checkpoint, or a fresh one from a preset (with a
    BPE tokenizer trained on ``samples`` when ``train_tokenizer`` is set)."""
    if cfg.init_from:
        return MMGPT.from_pretrained(cfg.init_from)
    mcfg = from_dict(MMGPTConfig, deep_merge(read_yaml(cfg.model), cfg.model_args))
    tokenizer = None
    if cfg.train_tokenizer and mcfg.tokenizer.path is None:
        tok_dir = cfg.run_dir / "tokenizer"
        if dist.is_main:
            corpus = bpe_corpus(samples, mcfg.tokenizer.resolved_prefix_space())
            train_bpe(corpus, mcfg.tokenizer.vocab_size).save_pretrained(str(tok_dir))
        distributed.barrier(dist)  # every process loads the one tokenizer rank 0 trained
        from mmgpt.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(tok_dir)
    torch.manual_seed(cfg.seed)
    return MMGPT(mcfg, tokenizer)


def trainable_table(model: MMGPT, lrs: dict[str, float]) -> str:
    rows = ["part              parameters   trainable   lr"]
    for name, part in model.parts().items():
        total = sum(p.numel() for p in part.parameters())
        train = sum(p.numel() for p in part.parameters() if p.requires_grad)
        lr = f"{lrs.get(name, 0):.1e}" if train else "-"
        rows.append(f"{name:<16} {total:>11,} {train:>11,}   {lr}")
    return "\n".join(rows)


class Trainer:
    """Builds model, data and optimiser from a :class:`TrainConfig` and runs the stage."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.dist = distributed.init_distributed()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = self.dist.device
        samples = load_samples(cfg.data.train, cfg.data)
        self.model = build_model(cfg, samples, self.dist)
        model = self.model
        model.set_trainable(cfg.trainable_parts())
        if cfg.lora.enabled:
            apply_lora(model, cfg.lora)
        if cfg.grad_checkpointing:
            model.decoder.gradient_checkpointing_enable()
        model.to(self.device).train()
        proc = model.processor
        self.max_len = cfg.data.max_len or model.config.max_length
        self.amp = self._precision()
        self.contrastive = cfg.stage == "contrastive"
        if self.contrastive:
            self.data = ContrastiveData(samples, proc)
            hidden = model.decoder.get_input_embeddings().embedding_dim
            dims = {m: (e.num_tokens() if m == "image" else None, e.output_dim) for m, e in model.encoders.items()}
            self.heads = ContrastiveHeads(dims, hidden, cfg.contrastive).to(self.device)
            model.add_module("contrastive_heads", self.heads)  # trained and checkpointed with the model
            self.module: torch.nn.Module = ContrastiveModule(model, self.heads)
        else:
            self.data = EncodedDataset(samples, proc)
            self.module = model
        self.val = None
        if cfg.data.val:
            val = load_samples(cfg.data.val, cfg.data)[: cfg.data.val_limit]
            self.val = ContrastiveData(val, proc) if self.contrastive else EncodedDataset(val, proc)
        grouped = cfg.data.batching == "group" and not self.contrastive
        self.schedule = Schedule(
            len(self.data), cfg.batch_size, cfg.grad_accum, self.dist.world_size, cfg.seed,
            group_lengths=[self.data.estimate_length(i) for i in range(len(self.data))] if grouped else None,
            group_keys=[self.data.modality_key(i) for i in range(len(self.data))] if grouped else None,
        )
        self.total_steps = self.schedule.total_steps(cfg.epochs, cfg.max_steps)
        # Wrap first: FSDP2's fully_shard swaps the parameters for sharded ones, which the
        # optimiser must hold.
        if cfg.distributed == "fsdp" and self.dist.enabled and (cfg.lora.enabled or self.contrastive):
            raise ConfigError("distributed=fsdp: LoRA and the contrastive stage run under ddp only "
                              "(their models are small; LoRA merges on one process)")
        self.wrapped = distributed.wrap_model(self.module, self.dist, cfg.distributed)
        self.sharded = distributed.is_sharded(model)
        self.optimizer = build_optimizer(model, cfg.optim)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg.optim, self.total_steps))
        self.start_step = 0
        ckpt_root = cfg.run_dir / "checkpoints"
        if cfg.resume and (last := latest_checkpoint(ckpt_root)) is not None:
            state = load_training_checkpoint(last, model, self.optimizer, self.scheduler, sharded=self.sharded)
            self.start_step = state["step"]
        self.caches = self._feature_caches()
        self.metrics = MetricsLog(cfg.run_dir, self.dist.is_main, truncate_after=self.start_step if cfg.resume else None)
        self.periodic = None
        if cfg.eval.data and self.dist.is_main and not self.contrastive:
            from mmgpt.eval.hook import PeriodicEval

            self.periodic = PeriodicEval(cfg.eval.data, every=cfg.eval.every, limit=cfg.eval.limit,
                                         tasks=cfg.eval.tasks, batch_size=cfg.eval.batch_size, seed=cfg.seed)

    # ------------------------------------------------------------------ helpers
    def _precision(self) -> torch.dtype | None:
        """The autocast dtype; under ``auto`` measured here, and bf16 only if every process measured it faster."""
        amp = resolve_precision(self.cfg.precision, self.device, tokens=self.cfg.batch_size * self.max_len,
                                **model_widths(self.model))
        if self.cfg.precision == "auto" and self.dist.enabled:
            votes = distributed.all_reduce_sum(int(amp is not None), self.dist)
            amp = amp if votes == self.dist.world_size else None
        return amp

    def _feature_caches(self) -> dict[str, FeatureCache]:
        if self.contrastive or not self.cfg.feature_cache:
            return {}
        caches = {}
        for m, enc in self.model.encoders.items():
            if any(p.requires_grad for p in enc.parameters()):
                continue
            fp = encoder_fingerprint(enc, extra=str(self.amp))
            root = Path(self.cfg.out_dir) / ".feature_cache" if self.dist.is_main else None
            caches[m] = FeatureCache(root, fp, m, skip=self._later_shard)
        return caches

    def _shard_tag(self, step: int) -> str:
        return f"{self.cfg.name}-step{step:08d}"

    def _later_shard(self, name: str) -> bool:
        """Shards this run wrote after the step it resumes from (features are batch-dependent in
        the last bits, so exact resume needs exactly the cache the checkpoint saw)."""
        prefix = f"{self.cfg.name}-step"
        return name.startswith(prefix) and int(name[len(prefix):] or 0) > self.start_step

    def flush_caches(self, step: int) -> None:
        if self.dist.is_main:
            for cache in self.caches.values():
                cache.flush(self._shard_tag(step))

    def _autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp)

    def _cached_features(self, batch: dict) -> None:
        """Swap raw media for cached encoder features where an encoder is frozen."""
        feats = {}
        for m, cache in self.caches.items():
            if m == "image" and batch.get("pixel_values") is not None:
                items = list(batch.pop("pixel_values"))
                enc = self.model.encoders["image"]

                def compute(idx, items=items, enc=enc):
                    with torch.no_grad(), self._autocast():
                        out = enc(torch.stack([items[i] for i in idx]).to(self.device))
                    return list(out)

                feats[m] = cache.features(items, compute, self.device)
            elif m == "audio" and batch.get("audio_values") is not None:
                vals, lens = batch.pop("audio_values"), batch.pop("audio_lengths")
                items = [vals[i, : lens[i]] for i in range(len(lens))]
                enc = self.model.encoders["audio"]

                def compute(idx, items=items, enc=enc):
                    sub = [items[i] for i in idx]
                    L = torch.tensor([len(s) for s in sub])
                    x = torch.zeros(len(sub), int(L.max()))
                    for j, s in enumerate(sub):
                        x[j, : len(s)] = s
                    with torch.no_grad(), self._autocast():
                        out, n = enc(x.to(self.device), L)
                    return [out[j, : n[j]] for j in range(len(sub))]

                feats[m] = cache.features(items, compute, self.device)
        if feats:
            batch["features"] = feats

    def micro_batches(self, step: int) -> list[dict]:
        out = []
        for idx in self.schedule.micro_batches(step, self.dist.rank):
            items = [self.data[i] for i in idx]
            if self.contrastive:
                out.append(collate_pairs(items, self.model.pad_token_id))
            else:
                out.append(make_batch(items, self.model.pad_token_id, self.cfg.data.batching, self.max_len,
                                      self.cfg.data.loss_weighting))
        return out

    def loss(self, batch: dict) -> tuple[torch.Tensor, int, dict]:
        """(summed loss, number of targets, extra metrics) of one micro-batch."""
        with self._autocast():
            if self.contrastive:
                return self.wrapped(self._to_device(batch))
            self._cached_features(batch)
            out = self.wrapped(**to_device(batch, self.device))
            return out.loss_sum, out.num_targets, {}

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    # ------------------------------------------------------------------ loop
    def train(self) -> Path:
        """Run the stage; returns the final model directory (``runs/<name>/final``)."""
        cfg, model = self.cfg, self.model
        if self.dist.is_main:
            lrs = {name: cfg.optim.lr for name in model.parts()}
            lrs.update({k: v for k, v in cfg.optim.lr_per_part.items()})
            print(f"stage {cfg.stage} | {self.total_steps} steps | global batch {self.schedule.global_batch} "
                  f"| precision {'bf16' if self.amp else 'fp32'} | {self.dist.world_size} process(es)")
            print(trainable_table(model, lrs))
        bar = tqdm(total=self.total_steps, initial=self.start_step, disable=not (cfg.progress and self.dist.is_main),
                   desc=f"{cfg.stage}", dynamic_ncols=True)
        t0 = time.time()
        tokens = 0
        step = self.start_step
        for step in range(self.start_step, self.total_steps):
            batches = self.micro_batches(step)
            n_global = distributed.all_reduce_sum(sum(b["target_weight"] for b in batches), self.dist)
            scale = self.dist.world_size / max(n_global, 1)
            loss_sum, extra = 0.0, {}
            for k, b in enumerate(batches):
                tokens += int(b["attention_mask"].sum()) if "attention_mask" in b else int(b["caption_mask"].sum())
                sync = k == len(batches) - 1 or not self.dist.enabled or cfg.distributed == "fsdp"
                ctx = contextlib.nullcontext() if sync else self.wrapped.no_sync()
                with ctx:
                    ls, _, extra = self.loss(b)
                    (ls * scale).backward()
                loss_sum += float(ls.detach())
            grad_norm = torch.nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.requires_grad], cfg.optim.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            loss = distributed.all_reduce_sum(loss_sum, self.dist) / max(n_global, 1)
            done = step + 1
            elapsed = time.time() - t0
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens / max(elapsed, 1e-9):.0f}")
            if done % cfg.log_every == 0 or done == self.total_steps:
                self.metrics.write({"kind": "train", "step": done, "loss": loss, "lr": self.scheduler.get_last_lr()[0],
                                    "grad_norm": float(grad_norm), "tokens_per_s": tokens / max(elapsed, 1e-9),
                                    "elapsed_s": elapsed, **extra})
            if cfg.val_every and done % cfg.val_every == 0 and done < self.total_steps:
                self.validate(done)
            if self.periodic is not None and self.periodic.due(done) and done < self.total_steps:
                self.evaluate(done)
            if cfg.save_every and done % cfg.save_every == 0 and done < self.total_steps:
                self.save_checkpoint(done)
            if cfg.time_limit and elapsed > cfg.time_limit:
                log.warning("time limit of %.0f s reached at step %d of %d", cfg.time_limit, done, self.total_steps)
                break
        bar.close()
        final_step = step + 1 if self.total_steps > self.start_step else self.start_step
        self.flush_caches(final_step)
        self.validate(final_step)
        if self.periodic is not None:
            self.evaluate(final_step)
        elapsed = time.time() - t0
        steps_run = final_step - self.start_step
        return self.finish(final_step, {"steps_per_s": steps_run / max(elapsed, 1e-9), "train_seconds": elapsed,
                                        "tokens_per_s": tokens / max(elapsed, 1e-9)})

    @torch.no_grad()
    def validate(self, step: int) -> float | None:
        if self.val is None:
            return None
        self.model.eval()
        total, count = 0.0, 0
        idx = list(range(self.dist.rank, len(self.val), self.dist.world_size))
        for s in range(0, len(idx), self.cfg.batch_size):
            items = [self.val[i] for i in idx[s : s + self.cfg.batch_size]]
            if self.contrastive:
                b = collate_pairs(items, self.model.pad_token_id)
            else:
                b = make_batch(items, self.model.pad_token_id, self.cfg.data.batching, self.max_len)
            ls, n, _ = self.loss(b)
            total += float(ls)
            count += n
        total, count = distributed.all_reduce_sum(total, self.dist), distributed.all_reduce_sum(count, self.dist)
        self.model.train()
        val = total / max(count, 1)
        self.metrics.write({"kind": "val", "step": step, "val_loss": val})
        return val

    def evaluate(self, step: int) -> dict[str, float]:
        """Generation metrics of the eval harness on the validation slice (rank 0 only)."""
        with self._autocast():
            results = self.periodic(self.model)
        self.metrics.write({"kind": "eval", "step": step, **results})
        return results

    def save_checkpoint(self, step: int) -> None:
        self.flush_caches(step)  # before the checkpoint: a resume finds every feature it had
        gathered = distributed.gather_full_state(self.model, self.optimizer) if self.sharded else None  # every process
        if self.dist.is_main:
            save_training_checkpoint(self.cfg.run_dir / "checkpoints", step, self.model, self.optimizer,
                                     self.scheduler, {"config": self.cfg.to_dict()}, self.cfg.keep_last, gathered)
        distributed.barrier(self.dist)

    def finish(self, step: int, stats: dict) -> Path:
        """Save the final model (LoRA merged, contrastive heads dropped), plot, summarise."""
        cfg = self.cfg
        final = cfg.run_dir / "final"
        full = distributed.gather_full_state(self.model)[0] if self.sharded else None  # a collective: every process
        if self.dist.is_main:
            if cfg.lora.enabled and cfg.lora.merge_on_save:
                merge_lora(self.model)
            if self.contrastive:
                del self.model.contrastive_heads
            if full is not None:
                full = {k: v for k, v in full.items() if not k.startswith("contrastive_heads.")}
            self.model.save_pretrained(final, full)
            records = self.metrics.records()
            plot_metrics(records, cfg.run_dir / "loss.png", title=f"{cfg.name} ({cfg.stage})")
            last = [r for r in records if r.get("kind") == "train"]
            val = [r for r in records if r.get("kind") == "val"]
            summary = {"stage": cfg.stage, "steps": step, "final_loss": last[-1]["loss"] if last else None,
                       "val_loss": val[-1]["val_loss"] if val else None, **stats,
                       "feature_cache": {m: {"hits": c.hits, "misses": c.misses} for m, c in self.caches.items()}}
            (cfg.run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
            print(f"saved {final}  ({stats['steps_per_s']:.2f} steps/s, final loss {summary['final_loss']})")
        distributed.barrier(self.dist)
        return final


def train(cfg: TrainConfig) -> Path:
    """Run one stage from a config; returns the final model directory."""
    trainer = Trainer(cfg)
    try:
        return trainer.train()
    finally:
        distributed.cleanup(trainer.dist)
