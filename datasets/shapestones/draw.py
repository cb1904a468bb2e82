"""Draw a ShapesTones image: coloured shapes in a 2×2 grid on a dark, slightly noisy background.

Each shape sits in its own cell. Its nominal extent ``e`` is 40 % (small) or 80 % (large) of
the cell side; per shape the geometry is tuned so that every large shape covers clearly more
pixels than every small one (square side 0.9·e, star outer radius 0.55·e with inner radius
0.4 of the outer, so that even at 64 px the star's points are visible and it does not read as
a circle). The centre is jittered by up to 3 px, never so far that the shape leaves its cell.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from mmgpt.errors import ConfigError

from .world import COLOURS, POSITIONS, SHAPES

BACKGROUND = 35
NOISE_SIGMA = 6.0
EXTENT = {"small": 0.4, "large": 0.8}  # fraction of the cell side
MAX_JITTER = 3  # pixels
STAR_INNER = 0.4  # inner radius / outer radius
MIN_IMAGE_SIZE = 16


def _star_points(cx: float, cy: float, outer: float) -> list[tuple[float, float]]:
    """Ten vertices of a five-pointed star pointing up, centred on its bounding box."""
    # The bbox of an upright star runs from -R to R·cos 36°; shift it so the bbox centre is (cx, cy).
    cy += outer * (1 - math.cos(math.pi / 5)) / 2
    points = []
    for k in range(10):
        r = outer if k % 2 == 0 else outer * STAR_INNER
        angle = -math.pi / 2 + k * math.pi / 5
        points.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
    return points


def _half_extent(shape: str, e: float) -> float:
    """Largest half width / half height of a shape of nominal extent ``e``."""
    return {"circle": 0.5 * e, "square": 0.45 * e, "triangle": 0.5 * e, "star": 0.55 * e * math.sin(0.4 * math.pi)}[shape]


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, e: float, fill: tuple) -> None:
    if shape == "circle":
        r = 0.5 * e
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        h = 0.45 * e
        draw.rectangle((cx - h, cy - h, cx + h, cy + h), fill=fill)
    elif shape == "triangle":
        h = 0.5 * e
        draw.polygon([(cx, cy - h), (cx + h, cy + h), (cx - h, cy + h)], fill=fill)
    elif shape == "star":
        draw.polygon(_star_points(cx, cy, 0.55 * e), fill=fill)
    else:  # pragma: no cover - render_image validates shapes first
        raise ConfigError(f"unknown shape {shape!r}")


def render_image(
    objects: list[dict], rng: np.random.Generator, image_size: int = 64, noise: bool = True
) -> Image.Image:
    """Draw the objects of one image.

    Args:
        objects: ``{"shape", "colour", "size", "position"}`` dicts, at most one per cell.
        rng: draws the jitter of each shape and the pixel noise.
        image_size: side of the square image in pixels.
        noise: add Gaussian pixel noise (σ = 6) over the whole image.

    Returns:
        An RGB PIL image of ``image_size × image_size`` pixels.

    Raises:
        ConfigError: ``image_size`` is too small, or an object has an unknown attribute or a
            cell used twice.
    """
    if image_size < MIN_IMAGE_SIZE:
        raise ConfigError(f"image_size must be at least {MIN_IMAGE_SIZE}, got {image_size}")
    cell = image_size / 2
    img = Image.new("RGB", (image_size, image_size), (BACKGROUND,) * 3)
    draw = ImageDraw.Draw(img)
    used = set()
    for obj in objects:
        if obj["position"] not in POSITIONS or obj["position"] in used:
            raise ConfigError(f"bad or repeated position {obj['position']!r}")
        if obj["colour"] not in COLOURS or obj["size"] not in EXTENT or obj["shape"] not in SHAPES:
            raise ConfigError(f"unknown colour or size in {obj}")
        used.add(obj["position"])
        row, col = divmod(POSITIONS.index(obj["position"]), 2)
        e = EXTENT[obj["size"]] * cell
        slack = math.floor(cell / 2 - _half_extent(obj["shape"], e) - 0.5)
        j = max(0, min(MAX_JITTER, slack))
        dx, dy = (int(v) for v in rng.integers(-j, j + 1, size=2))
        cx, cy = (col + 0.5) * cell + dx, (row + 0.5) * cell + dy
        _draw_shape(draw, obj["shape"], cx, cy, e, COLOURS[obj["colour"]])
    if not noise:
        return img
    pixels = np.asarray(img, dtype=np.float32)  # (H, W, 3)
    pixels = pixels + rng.normal(0.0, NOISE_SIGMA, size=pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")
