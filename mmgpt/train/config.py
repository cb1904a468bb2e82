"""Training configuration: one dataclass tree per run, from a YAML recipe plus ``key=value`` overrides.

A recipe (a YAML file, or the name of one shipped in ``mmgpt/recipes/``: ``stage1_align``) names
the stage, the model (a preset, by path or shipped name, for a fresh model, or ``init_from`` a
previous stage's checkpoint), the data, what is trainable and how
to optimise. Unknown keys and bad values raise :class:`~mmgpt.errors.ConfigError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mmgpt.batching import Weighting
from mmgpt.config import apply_overrides, from_dict, read_yaml, to_dict
from mmgpt.errors import ConfigError

Stage = Literal["text", "contrastive", "align", "interleaved", "instruct"]

# What each stage trains unless the recipe says otherwise (DESIGN.md, "Training stages").
DEFAULT_TRAINABLE: dict[str, dict[str, bool]] = {
    "text": {"encoders": False, "adapters": False, "decoder": True},
    "contrastive": {"encoders": True, "adapters": False, "decoder": False},
    "align": {"encoders": False, "adapters": True, "decoder": False},
    "interleaved": {"encoders": False, "adapters": True, "decoder": True},
    "instruct": {"encoders": False, "adapters": True, "decoder": True},
}


@dataclass
class DataConfig:
    """Where samples come from and how they are batched.

    ``tasks`` keeps only samples whose ``meta["task"]`` is listed (ShapesTones tags every
    row). ``text_only`` turns every sample into a text document (stage 0a). ``batching``:
    ``pack`` puts several samples in a row of ``max_len`` tokens with a block-diagonal mask;
    ``pad`` pads one sample per row; ``group`` pads batches of similar length (LLaVA-style
    length grouping by modality). ``loss_weighting`` weights the training loss's target tokens:
    ``token`` (every token alike: long captions dominate one-word answers), ``sample`` (every
    sample alike) or ``square`` (a sample's tokens by 1/sqrt(its target count), InternVL 2.5);
    validation loss is always the plain token mean.

    ``on_error``: ``raise`` stops at the first bad row; ``skip`` skips rows that do not parse
    and, during training, replaces a sample whose media fail to decode (or that does not fit)
    with the next good one, counting them: more than ``max_bad_fraction`` of the dataset bad
    stops the run. ``num_workers`` processes per training process read, decode and collate
    ahead of the step (``prefetch`` micro-batches each; default on a GPU: the process's share of
    the cores less one; on the CPU: 0, in the training process, whose threads already use
    every core).

    ``media_folder`` is the folder the rows' media paths are relative to (COCO's ``train2017/``
    beside ``annotations/captions_train2017.json``, Clotho's ``development/`` beside its CSV);
    default each data file's own folder. ``val_media_folder`` is the same for ``val`` (default
    ``media_folder``). With a media folder, a row whose path is absolute or leaves the folder
    with ``..`` is a bad row unless ``allow_outside_media_folder``.

    ``streaming``: read WebDataset tar shards as streams instead of indexing them (``null``,
    the default: stream compressed shards, index plain ``.tar``, which gives a global shuffle).
    Shards are dealt to ``streams`` streams (at most one per shard; each process takes its
    share, each data worker its share of those), read in a fresh seeded shard order each
    epoch and shuffled within a ``shuffle_buffer`` of samples; the stream positions are saved
    in training checkpoints, so a resume is exact. Streaming needs ``max_steps`` (no length up
    front); ``max_bad_fraction`` is then judged against the samples read so far (at least 1000).
    """

    train: str = ""
    val: str | None = None
    media_folder: str | None = None
    val_media_folder: str | None = None
    allow_outside_media_folder: bool = False
    format: str = "auto"
    tasks: list[str] | None = None
    text_only: bool = False
    batching: Literal["pack", "pad", "group"] = "pack"
    max_len: int | None = None
    val_limit: int = 256
    on_error: Literal["raise", "skip"] = "raise"
    max_bad_fraction: float = 0.01
    num_workers: int | None = None
    prefetch: int = 2
    loss_weighting: Weighting = "token"
    streaming: bool | None = None
    streams: int = 8
    shuffle_buffer: int = 1000

    def __post_init__(self) -> None:
        if self.streams < 1 or self.shuffle_buffer < 1:
            raise ConfigError(f"data.streams and data.shuffle_buffer must be >= 1, got {self.streams}, "
                              f"{self.shuffle_buffer}")
        if self.num_workers is not None and self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {self.num_workers}")
        if self.prefetch < 1:
            raise ConfigError(f"data.prefetch must be >= 1, got {self.prefetch}")
        if not 0 <= self.max_bad_fraction <= 1:
            raise ConfigError(f"data.max_bad_fraction must be in [0, 1], got {self.max_bad_fraction}")


@dataclass
class OptimConfig:
    """AdamW with warm-up and cosine decay; ``lr_per_part`` overrides ``lr`` for named parts
    (``encoders``, ``encoders.image``, ``adapters``, ``decoder`` ...; the longest match wins)."""

    lr: float = 1e-3
    lr_per_part: dict[str, float] = field(default_factory=dict)
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-8
    warmup_steps: int = 50
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    max_bad_steps: int = 10  # steps whose loss or gradient is NaN/inf are skipped; more stop the run

    def __post_init__(self) -> None:
        if self.max_bad_steps < 0:
            raise ConfigError(f"optim.max_bad_steps must be >= 0, got {self.max_bad_steps}")
        if self.lr <= 0:
            raise ConfigError(f"optim.lr must be positive, got {self.lr}")
        if len(self.betas) != 2:
            raise ConfigError(f"optim.betas needs two numbers, got {self.betas}")


@dataclass
class LoraConfig:
    """LoRA on the decoder through ``peft``. ``merge_on_save``: fold it into the weights of
    ``final/``; false: ``final/`` holds the base model (with the parts trained outside LoRA) and
    ``lora_adapter/`` beside it the adapter in peft's format."""

    enabled: bool = False
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    merge_on_save: bool = True


@dataclass
class ContrastiveConfig:
    """Stage 0b: CLIP-style image-text and CLAP-style audio-text InfoNCE.

    The text side is the (frozen) decoder's mean-pooled last hidden state over the caption,
    followed by a trainable projection; each encoder's mean-pooled features get their own
    projection into the same ``dim``-wide space.
    """

    dim: int = 128
    temperature: float = 0.07
    learn_temperature: bool = True


@dataclass
class EvalConfig:
    """Periodic evaluation with the eval harness on a small slice of ``data``."""

    data: str | None = None
    every: int = 0  # steps; 0 = only at the end
    limit: int = 64
    tasks: list[str] | None = None
    batch_size: int = 32


@dataclass
class TrainConfig:
    """One training run (one stage)."""

    stage: Stage = "instruct"
    name: str = "run"
    out_dir: str = "runs"
    model: str | None = None  # model preset (YAML path or shipped name) for a fresh model
    model_args: dict[str, Any] = field(default_factory=dict)  # overrides merged into the preset
    init_from: str | None = None  # previous stage's final checkpoint directory
    train_tokenizer: bool = False  # fresh model: train a byte-level BPE on the training text first
    trainable: dict[str, bool] = field(default_factory=dict)  # merged over the stage's defaults
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    batch_size: int = 32  # samples per micro-batch per process
    grad_accum: int = 1
    max_steps: int | None = None
    epochs: float = 1.0
    time_limit: float | None = None  # seconds; stops early and saves, for fixed-budget runs
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: the faster of the two, measured here
    grad_checkpointing: bool = False
    # torch.compile the decoder's forward/backward: false, true, or auto (measured on the run's own
    # steps 2-4, kept when the steps left times the saving exceed twice the compile time; mmgpt.train.compile)
    compile: bool | Literal["auto"] = False
    feature_cache: bool = True  # cache frozen encoders' features (no augmentation in mmgpt)
    seed: int = 0
    threads: int | None = None
    log_every: int = 10
    val_every: int = 0  # steps between validation-loss passes; 0 = at the end only
    save_every: int = 0  # steps between checkpoints; 0 = at the end only
    keep_last: int = 2
    # true: continue from checkpoints/latest (an error if there is none, or if a setting that
    # moves the samples or the model changed); "force": accept such a change
    resume: bool | Literal["force"] = False
    # Under torchrun: "ddp" replicates the model; "fsdp" shards the decoder layers with FSDP2
    # (checkpoints gather the full weights; not for LoRA or the contrastive stage).
    distributed: Literal["ddp", "fsdp"] = "ddp"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError("batch_size and grad_accum must be at least 1")
        if self.model is None and self.init_from is None:
            raise ConfigError("give model (a preset YAML for a fresh model) or init_from (a checkpoint)")
        if not self.data.train:
            raise ConfigError("data.train is required (a path or glob)")

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    def trainable_parts(self) -> dict[str, bool]:
        flags = dict(DEFAULT_TRAINABLE[self.stage])
        flags.update(self.trainable)
        return flags

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
        """Load a recipe (a path or a shipped name); data and run paths inside it are relative to
        the working directory, ``model`` and ``base`` may name shipped presets and recipes."""
        return from_dict(cls, apply_overrides(read_yaml(path, "recipe"), overrides))

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)
