"""The training loop shared by every stage.

One step = ``grad_accum`` micro-batches per process; the loss is the sum of the batch losses
divided by the objective's weight of the whole global batch (target tokens of all micro-batches
on all processes), so accumulation and DDP give the gradient of one big batch. What a stage
optimises (its data, batches, loss and metrics) is its objective (:mod:`mmgpt.train.objective`);
the trainer keeps the loop, checkpoints, distribution and logging.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from functools import partial
from pathlib import Path

import torch
from tqdm import tqdm

from mmgpt.errors import CheckpointError, ConfigError, TrainingError
from mmgpt.precision import autocast, model_widths, resolve_precision
from mmgpt.safe_io import tidy
from mmgpt.train import distributed
from mmgpt.train.compile import CompileChoice
from mmgpt.train.config import TrainConfig
from mmgpt.train.contrastive import ContrastiveObjective
from mmgpt.train.data import Schedule, load_samples, open_stream, text_item
from mmgpt.train.init_model import prepare_model, trainable_table
from mmgpt.train.lm import LMObjective
from mmgpt.train.loader import BadCount, Draw, StepLoader, default_workers
from mmgpt.train.lora import merge_lora, save_lora_adapter
from mmgpt.train.metrics import MetricsLog, summarise
from mmgpt.train.objective import Objective, StepLoss
from mmgpt.train.optim import build_optimizer, lr_lambda
from mmgpt.train.resume import (
    checkpoint_step,
    config_changes,
    latest_checkpoint,
    load_training_checkpoint,
    save_training_checkpoint,
)
from mmgpt.train.stream import MIN_JUDGED, StreamLoader, StreamPlan

log = logging.getLogger(__name__)


class Trainer:
    """Builds model, objective, data and optimiser from a :class:`TrainConfig` and runs the stage."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.dist = distributed.init_distributed()
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = self.dist.device
        self.stream = open_stream(cfg.data.train, cfg.data, cfg.data.media_folder)
        samples = self.stream if self.stream is not None else load_samples(cfg.data.train, cfg.data,
                                                                           cfg.data.media_folder)
        self.model = prepare_model(cfg, samples, self.dist, self.device)
        self.amp = self._precision()
        self.resume_from = self._resume_point()
        self.start_step = checkpoint_step(self.resume_from) if self.resume_from else 0
        self.objective = self._objective()
        self.data = self.objective.dataset(samples)
        self.val = None
        if cfg.data.val:
            val = load_samples(cfg.data.val, cfg.data, cfg.data.val_media_folder or cfg.data.media_folder)
            self.val = Draw(self.objective.dataset(val[: cfg.data.val_limit]), cfg.data.on_error)
        workers = cfg.data.num_workers
        workers = default_workers(self.dist.world_size, self.device) if workers is None else workers
        if self.stream is not None:
            self._stream_loader(workers)
        else:
            self._indexed_loader(workers)
        self._setup_optimisation()
        setting = cfg.compile if self.objective.uses_decoder else False
        self.compile = CompileChoice(setting, self.model.decoder, self.total_steps - self.start_step)
        self.metrics = MetricsLog(cfg.run_dir, self.dist.is_main, resume_at=self.start_step if cfg.resume else None)

    # ------------------------------------------------------------------ set-up
    def _resume_point(self):
        """The checkpoint to resume from (None for a fresh run), after tidying what killed
        writes left in the run folder (a replaced ``final/`` put back, dead temporaries removed).

        Raises:
            CheckpointError: ``resume`` is set but there is no checkpoint, or ``latest`` dangles.
        """
        cfg, ckpts = self.cfg, self.cfg.run_dir / "checkpoints"
        if self.dist.is_main:
            for folder in (cfg.run_dir, ckpts):
                for p in tidy(folder):
                    log.info("removed %s, left by an interrupted write", p)
        distributed.barrier(self.dist)
        if not cfg.resume:
            return None
        found = latest_checkpoint(ckpts)
        if found is None:
            raise CheckpointError(f"resume={cfg.resume}: no checkpoint in {ckpts} to resume from; "
                                  "run without resume to start at step 0")
        return found

    def _indexed_loader(self, workers: int) -> None:
        """Steps drawn by index: the seeded schedule over the whole dataset."""
        cfg = self.cfg
        lengths, keys = self.objective.group_keys(self.data) or (None, None)
        self.schedule = Schedule(len(self.data), cfg.batch_size, cfg.grad_accum, self.dist.world_size, cfg.seed,
                                 group_lengths=lengths, group_keys=keys)
        self.total_steps = self.schedule.total_steps(cfg.epochs, cfg.max_steps)
        self.draw, self.bad = Draw(self.data, cfg.data.on_error), BadCount(len(self.data), cfg.data.max_bad_fraction)
        self.loader = StepLoader(self.draw, lambda step: self.schedule.micro_batches(step, self.dist.rank),
                                 self.objective.collate, workers, cfg.data.prefetch, self.device.type == "cuda")

    def _stream_loader(self, workers: int) -> None:
        """Steps read from streamed shards (:mod:`mmgpt.train.stream`)."""
        cfg = self.cfg
        if cfg.max_steps is None:
            raise ConfigError(f"{cfg.data.train}: streamed shards have no length up front; set max_steps")
        if cfg.data.batching == "group":
            raise ConfigError("data.batching=group sorts the whole dataset by length; streamed shards use pack or pad")
        self.total_steps = cfg.max_steps
        plan = StreamPlan(len(self.stream.shards), cfg.data.streams, self.dist.world_size, self.dist.rank, cfg.seed,
                          cfg.data.shuffle_buffer)
        make_item = partial(text_item, self.data.item) if cfg.data.text_only else self.data.item
        self.bad = BadCount(MIN_JUDGED, cfg.data.max_bad_fraction)
        self.loader = StreamLoader(self.stream, plan, make_item, self.objective.collate, cfg.batch_size,
                                   cfg.grad_accum, workers, cfg.data.prefetch, self.device.type == "cuda")

    def _precision(self) -> torch.dtype | None:
        """The autocast dtype; under ``auto`` measured here, and bf16 only if every process measured it faster."""
        max_len = self.cfg.data.max_len or self.model.config.max_length
        amp = resolve_precision(self.cfg.precision, self.device, tokens=self.cfg.batch_size * max_len,
                                **model_widths(self.model))
        if self.cfg.precision == "auto" and self.dist.enabled:
            votes = distributed.all_reduce_sum(int(amp is not None), self.dist)
            amp = amp if votes == self.dist.world_size else None
        return amp

    def _objective(self) -> Objective:
        """Contrastive for stage 0b, the next-token loss for every other stage."""
        if self.cfg.stage == "contrastive":
            return ContrastiveObjective(self.cfg, self.model, self.device)
        return LMObjective(self.cfg, self.model, self.device, self.amp, self.dist.is_main, self.start_step)

    def _setup_optimisation(self) -> None:
        """Wrap for DDP / FSDP2, build optimiser and schedule, and restore them on resume.

        FSDP2's ``fully_shard`` swaps the parameters for sharded ones, so it wraps before the
        optimiser is built (the optimiser must hold the sharded ones).
        """
        self.bad_steps = 0
        cfg = self.cfg
        if cfg.distributed == "fsdp" and self.dist.enabled and (cfg.lora.enabled or not self.objective.shardable):
            raise ConfigError("distributed=fsdp: LoRA and the contrastive stage run under ddp only "
                              "(their models are small; LoRA merges on one process)")
        self.wrapped = distributed.wrap_model(self.objective.module, self.dist, cfg.distributed)
        self.sharded = distributed.is_sharded(self.model)
        self.optimizer = build_optimizer(self.model, cfg.optim)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg.optim, self.total_steps))
        if self.resume_from is not None:
            self._restore(load_training_checkpoint(self.resume_from, self.model, self.optimizer, self.scheduler,
                                                   sharded=self.sharded))

    def _restore(self, state: dict) -> None:
        """Take over a checkpoint's trainer state, after checking it belongs to this run.

        Raises:
            CheckpointError: its step is not the one its name says.
            ConfigError: a setting that moves the samples or the model changed (not under ``resume=force``).
        """
        if state["step"] != self.start_step:
            raise CheckpointError(f"{self.resume_from}: holds step {state['step']}, its name says {self.start_step}")
        changes = config_changes(state.get("config"), self.cfg.to_dict())
        if changes and self.cfg.resume != "force":
            raise ConfigError(f"{self.resume_from}: this run's settings differ from the checkpoint's in what moves "
                              f"the samples or the model: {'; '.join(changes[:8])}. Resume with the same "
                              "settings, or resume=force to accept the change")
        if changes:
            log.warning("resume=force: settings changed since %s: %s", self.resume_from, "; ".join(changes))
        self.bad_steps = int(state.get("bad_steps", 0))
        if self.stream is not None:
            self.loader.restore(state.get("stream"), str(self.resume_from))

    # ------------------------------------------------------------------ steps
    def micro_batches(self, step: int) -> list[dict]:
        """This process's micro-batches of global step ``step``, built here (the loop uses :attr:`loader`)."""
        out = []
        for idx in self.schedule.micro_batches(step, self.dist.rank):
            drawn = [self.draw[i] for i in idx]
            self.bad.add([b for d in drawn for b in d.bad])
            out.append(self.objective.collate([d.item for d in drawn]))
        return out

    def loss(self, batch: dict) -> StepLoss:
        """The objective's loss of one micro-batch, under the run's autocast."""
        with autocast(self.device, self.amp):
            return self.objective.loss(batch, self.wrapped)

    def step(self, batches: list[dict]) -> tuple[float, float, dict, int]:
        """One optimiser step on this process's micro-batches; returns (global mean loss, gradient
        norm, metrics, tokens fed)."""
        n_global = distributed.all_reduce_sum(sum(b["target_weight"] for b in batches), self.dist)
        scale = self.dist.world_size / max(n_global, 1)
        loss_sum, metrics, tokens = 0.0, {}, 0
        for k, batch in enumerate(batches):
            tokens += self.objective.tokens(batch)
            sync = k == len(batches) - 1 or not self.dist.enabled or self.cfg.distributed == "fsdp"
            with contextlib.nullcontext() if sync else self.wrapped.no_sync():
                out = self.loss(batch)
                (out.loss_sum * scale).backward()
            loss_sum += float(out.loss_sum.detach())
            metrics = out.metrics
        grad_norm = float(torch.nn.utils.clip_grad_norm_(
            [p for p in self.model.parameters() if p.requires_grad], self.cfg.optim.grad_clip))
        loss = distributed.all_reduce_sum(loss_sum, self.dist) / max(n_global, 1)
        if math.isfinite(loss) and math.isfinite(grad_norm):  # the same on every process (reduced)
            self.optimizer.step()
        else:
            self._bad_step(loss, grad_norm)
            metrics = {**metrics, "skipped": 1}
        self.scheduler.step()  # a skipped step still moves the schedule: steps and lr stay aligned
        self.optimizer.zero_grad(set_to_none=True)
        return loss, grad_norm, metrics, tokens

    def _bad_step(self, loss: float, grad_norm: float) -> None:
        """Count a step whose loss or gradient is not finite (its update is skipped).

        Raises:
            TrainingError: more than ``optim.max_bad_steps`` of them.
        """
        self.bad_steps += 1
        log.warning("step %d: loss %s, gradient norm %s; update skipped (%d of at most %d)", self.scheduler.last_epoch + 1,
                    loss, grad_norm, self.bad_steps, self.cfg.optim.max_bad_steps)
        if self.bad_steps > self.cfg.optim.max_bad_steps:
            last = latest_checkpoint(self.cfg.run_dir / "checkpoints")
            raise TrainingError(f"{self.bad_steps} steps had a non-finite loss or gradient, more than "
                                f"optim.max_bad_steps={self.cfg.optim.max_bad_steps} (lower optim.lr, check the data); "
                                f"last checkpoint: {last or 'none (save_every=0)'}")

    # ------------------------------------------------------------------ loop
    def train(self) -> Path:
        """Run the stage; returns the final model directory (``runs/<name>/final``)."""
        cfg = self.cfg
        self._announce()
        bar = tqdm(total=self.total_steps, initial=self.start_step, desc=cfg.stage, dynamic_ncols=True,
                   disable=not (cfg.progress and self.dist.is_main))
        t0, tokens, final_step = time.time(), 0, self.start_step
        for step, batches, bad in self.loader.steps(self.start_step, self.total_steps):
            if self.stream is not None:
                self.bad.size = max(self.loader.read, MIN_JUDGED)
            self.bad.add(bad)
            self.compile.before(step - self.start_step)
            t_step = time.time()
            loss, grad_norm, metrics, n = self.step(batches)
            self.compile.after(step - self.start_step, time.time() - t_step)
            tokens, final_step, elapsed = tokens + n, step + 1, time.time() - t0
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens / max(elapsed, 1e-9):.0f}")
            if final_step % cfg.log_every == 0 or final_step == self.total_steps:
                self.metrics.write({"kind": "train", "step": final_step, "loss": loss, "grad_norm": grad_norm,
                                    "lr": self.scheduler.get_last_lr()[0], "tokens_per_s": tokens / max(elapsed, 1e-9),
                                    "elapsed_s": elapsed, **metrics})
            if final_step < self.total_steps:
                self._periodic(final_step)
            if cfg.time_limit and elapsed > cfg.time_limit:
                log.warning("time limit of %.0f s reached at step %d of %d", cfg.time_limit, final_step, self.total_steps)
                break
        bar.close()
        elapsed = time.time() - t0
        self.objective.flush(final_step)
        self.validate(final_step)
        self.evaluate(final_step, final=True)
        steps_run = final_step - self.start_step
        return self.finish(final_step, {"steps_per_s": steps_run / max(elapsed, 1e-9), "train_seconds": elapsed,
                                        "tokens_per_s": tokens / max(elapsed, 1e-9), **self.compile.report})

    def _announce(self) -> None:
        if not self.dist.is_main:
            return
        lrs = {name: self.cfg.optim.lr for name in self.model.parts()} | dict(self.cfg.optim.lr_per_part)
        cfg = self.cfg
        print(f"stage {cfg.stage} | {self.total_steps} steps | global batch "
              f"{cfg.batch_size * cfg.grad_accum * self.dist.world_size}{' (streamed)' if self.stream else ''} "
              f"| precision {'bf16' if self.amp else 'fp32'} | {self.dist.world_size} process(es)")
        print(trainable_table(self.model, lrs))

    def _periodic(self, step: int) -> None:
        """Validation, evaluation and checkpoints that fall on ``step`` (before the last one)."""
        cfg = self.cfg
        if cfg.val_every and step % cfg.val_every == 0:
            self.validate(step)
        self.evaluate(step, final=False)
        if cfg.save_every and step % cfg.save_every == 0:
            self.save_checkpoint(step)

    @torch.no_grad()
    def validate(self, step: int) -> float | None:
        """The validation loss (plain token mean) over this process's share, reduced over all."""
        if self.val is None:
            return None
        self.model.eval()
        total, count = 0.0, 0.0
        idx = list(range(self.dist.rank, len(self.val), self.dist.world_size))
        for s in range(0, len(idx), self.cfg.batch_size):
            items = [self.val[i].item for i in idx[s: s + self.cfg.batch_size]]
            out = self.loss(self.objective.collate(items, validation=True))
            total, count = total + float(out.loss_sum), count + out.weight
        total, count = distributed.all_reduce_sum(total, self.dist), distributed.all_reduce_sum(count, self.dist)
        self.model.train()
        val = total / max(count, 1)
        self.metrics.write({"kind": "val", "step": step, "val_loss": val})
        return val

    def evaluate(self, step: int, final: bool) -> None:
        """The objective's generation metrics when due (rank 0)."""
        if self.dist.is_main and (results := self.objective.evaluate(self.model, step, final)) is not None:
            self.metrics.write({"kind": "eval", "step": step, **results})

    def save_checkpoint(self, step: int) -> None:
        """A training checkpoint for exact resume (after the objective's own state, e.g. cache shards)."""
        self.objective.flush(step)
        gathered = distributed.gather_full_state(self.model, self.optimizer) if self.sharded else None
        state: dict = {"config": self.cfg.to_dict(), "bad_steps": self.bad_steps}
        if self.stream is not None:  # every process's stream positions (a collective)
            states = distributed.gather(self.loader.state(), self.dist)
            state["stream"] = {"plan": states[0]["plan"],
                               "positions": {k: v for st in states for k, v in st["positions"].items()}}
        if self.dist.is_main:
            save_training_checkpoint(self.cfg.run_dir / "checkpoints", step, self.model, self.optimizer,
                                     self.scheduler, state, self.cfg.keep_last, gathered)
        distributed.barrier(self.dist)

    def finish(self, step: int, stats: dict) -> Path:
        """Save the final model (LoRA merged, the objective's additions dropped), plot, summarise."""
        cfg = self.cfg
        final = cfg.run_dir / "final"
        full = distributed.gather_full_state(self.model)[0] if self.sharded else None  # a collective
        if self.dist.is_main:
            if cfg.lora.enabled and cfg.lora.merge_on_save:
                merge_lora(self.model)
            elif cfg.lora.enabled:
                print(f"saved the LoRA adapter to {save_lora_adapter(self.model, cfg.run_dir / 'lora_adapter')}")
            dropped = tuple(self.objective.finalize(self.model))
            if full is not None and dropped:
                full = {k: v for k, v in full.items() if not k.startswith(dropped)}
            self.model.save_pretrained(final, full)
            summary = summarise(self.metrics.records(), cfg.run_dir, cfg.stage, cfg.name,
                                {"steps": step, **stats, "bad_samples": len(self.bad.seen), **self.objective.summary()})
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
