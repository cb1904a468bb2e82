"""Vision encoder: any timm model, returning patch features with prefix tokens dropped.

Shapes: B images, C=3 channels, H=W=img_size, N patch tokens, D encoder width.

    pixel_values (B, 3, H, W) -> VisionEncoder -> features (B, N, D) + lengths (B,) all N

``select_layer`` picks which block's output is used (-1 the last, with the model's final
norm; -2 the one before, LLaVA's choice, without it). Blocks after the selected one are
removed at build time, so they cost nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import timm
import torch

from mmgpt.encoders.base import MediaEncoder
from mmgpt.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)


class VisionEncoder(MediaEncoder):
    """A timm backbone as a patch-feature extractor (the ``image`` modality).

    Args:
        cfg: a :class:`mmgpt.config.VisionConfig`.
        load_weights: load ``cfg.pretrained_path`` when set. Off when restoring an mmgpt
            checkpoint, which carries the weights itself.

    Raises:
        ConfigError: unknown timm model name or arguments it does not accept.
        CheckpointError: the weight file is missing or does not fit the model.
    """

    modality = "image"
    token_layout = "grid"

    def __init__(self, cfg, load_weights: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        kwargs = {k: getattr(cfg, k) for k in ("patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "reg_tokens")}
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        kwargs.update(cfg.timm_kwargs)
        pretrained = bool(cfg.pretrained_path) and load_weights
        extra = {}
        if pretrained:
            path = Path(cfg.pretrained_path)
            if not path.is_file():
                raise CheckpointError(f"vision weights {path} not found")
            extra = {"pretrained_cfg_overlay": {"file": str(path), "num_classes": 0}}
        try:
            model = timm.create_model(
                cfg.model_name, pretrained=pretrained, num_classes=0, img_size=cfg.img_size, **kwargs, **extra
            )
        except RuntimeError as e:
            if pretrained:
                raise CheckpointError(f"vision weights {cfg.pretrained_path} do not fit {cfg.model_name}: {e}") from e
            raise ConfigError(f"vision: cannot build timm model {cfg.model_name!r}: {e}") from e
        except (TypeError, ValueError) as e:
            raise ConfigError(f"vision: cannot build timm model {cfg.model_name!r} with {kwargs}: {e}") from e
        if pretrained:
            log.info("loaded vision weights from %s", cfg.pretrained_path)

        blocks = getattr(model, "blocks", None)
        if cfg.select_layer != -1:
            if blocks is None or not hasattr(model, "prune_intermediate_layers"):
                raise ConfigError(f"vision.select_layer needs a transformer with blocks; {cfg.model_name} has none")
            n = len(blocks)
            index = cfg.select_layer if cfg.select_layer > 0 else n + 1 + cfg.select_layer
            if not 1 <= index <= n:
                raise ConfigError(f"vision.select_layer={cfg.select_layer} is outside 1..{n} (or -{n}..-1)")
            # Keep blocks 1..index and drop the final norm: the output is that block's hidden state.
            model.prune_intermediate_layers([index - 1], prune_norm=True, prune_head=True)
        self.model = model
        self._transform = None
        self.num_prefix_tokens = int(getattr(model, "num_prefix_tokens", 0))
        self.width = int(model.num_features)
        grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
        if grid is not None:
            self.num_patches = int(grid[0] * grid[1])
        else:  # convnets and others: measure once
            with torch.no_grad():
                self.num_patches = self._features(torch.zeros(1, 3, cfg.img_size, cfg.img_size)).shape[1]

    @property
    def output_dim(self) -> int:
        return self.width

    @property
    def fixed_tokens(self) -> int:
        return self.num_patches

    @property
    def image_size(self) -> int:
        """Side of the square input in pixels."""
        return self.cfg.img_size

    def num_tokens(self, length: int = 0) -> int:
        """Feature vectors per image (N); every image is resized to the same size."""
        return self.num_patches

    def prepare(self, decoded) -> torch.Tensor:
        """An RGB PIL image -> normalised (3, H, W) pixels (:meth:`image_transform`)."""
        if self._transform is None:
            self._transform = self.image_transform()
        return self._transform(decoded)

    def dummy_input(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        size = self.cfg.img_size
        return torch.zeros(1, 3, size, size, device=device), torch.tensor([size], device=device)

    def _features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.model.forward_features(pixel_values)
        if x.ndim == 4:  # convnet feature map (B, C, h, w) -> (B, h*w, C)
            x = x.flatten(2).transpose(1, 2)
        return x[:, self.num_prefix_tokens :]  # drop CLS / register tokens: (B, N, D)

    def forward(self, pixel_values: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) float (+ lengths, unused: images are one size) -> (B, N, D) patch features + (B,) N."""
        feats = self._features(pixel_values)
        return feats, torch.full((feats.shape[0],), feats.shape[1], dtype=torch.long, device=feats.device)

    def image_transform(self):
        """The matching eval transform (PIL image -> normalised (3, H, W) tensor) from timm's data config.

        The whole image is resized to ``img_size`` x ``img_size`` (``squash``), never cropped, so
        nothing at the borders is lost.
        """
        data_cfg = timm.data.resolve_data_config({}, model=self.model)
        return timm.data.create_transform(
            input_size=(3, self.cfg.img_size, self.cfg.img_size),
            interpolation=data_cfg.get("interpolation", "bicubic"),
            mean=data_cfg["mean"],
            std=data_cfg["std"],
            crop_pct=1.0,
            crop_mode="squash",
            is_training=False,
        )
