"""A deterministic checker for shape scenes, built from the generator's own rules.

It reads an image back into colour, shape, position and size, and scores it against a caption:

1. background: the median colour of the border pixels;
2. shape colour: the median of the pixels farthest from the background;
3. coverage: each pixel's share of shape colour vs background (a projection), which gives
   anti-aliased edges their fractional area; the largest connected blob is kept;
4. colour: the nearest palette colour; position: the nearest position centre to the
   coverage-weighted centroid (the generator places every shape by its centroid);
5. shape by geometry: area over (width x height), where width and height are the summed
   column and row maxima of coverage: square ~1, circle ~pi/4, triangle ~1/2; a triangle is
   also bottom-heavy (its centroid lies a sixth of its height below the middle of its extent);
6. size: the half extent implied by area and shape, against the midpoint of small and large.

Example::

    from plait.local_models.diffusion.shapes_checker import check
    from plait.local_models.diffusion.shapes_data import render, sample_scenes
    scene = sample_scenes(1, seed=0)[0]
    check(render([scene])[0], scene.caption).all_ok  # True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from plait.local_models.diffusion.shapes_data import COLOURS, POSITIONS, SIZES, parse_caption

_MIN_CONTRAST = 40.0  # below this distance from the background there is no shape at all
_FILL = {"triangle": 0.5, "circle": np.pi / 4, "square": 1.0}
_TRIANGLE_SKEW = 0.08  # a triangle's centroid sits a sixth of its height below its middle
_AREA_PER_HALF2 = {"circle": np.pi, "square": 4.0, "triangle": 1.65}


@dataclass(frozen=True)
class Reading:
    """What the checker sees in an image (``None`` everywhere when it finds no shape)."""

    colour: str | None
    shape: str | None
    position: str | None
    size: str | None
    fill: float = 0.0
    skew: float = 0.0
    centroid: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class Score:
    """An image scored against its caption. Attributes the caption leaves out count as right."""

    reading: Reading
    colour_ok: bool
    shape_ok: bool
    position_ok: bool
    size_ok: bool

    @property
    def all_ok(self) -> bool:
        """Colour, shape and position all right (size is reported apart)."""
        return self.colour_ok and self.shape_ok and self.position_ok


def _as_array(image: Any) -> np.ndarray:
    arr = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"Expected an RGB image (H, W, 3), got an array of shape {arr.shape}")
    if arr.dtype != np.uint8:  # floats in [0, 1]
        arr = np.clip(np.asarray(arr, dtype=np.float64) * 255.0, 0, 255)
    return arr.astype(np.float64)


def _largest_blob(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of a boolean mask (small images: a plain flood fill)."""
    h, w = mask.shape
    labels = np.zeros(mask.shape, dtype=np.int32)
    best, best_size, label = 0, 0, 0
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if labels[y0, x0]:
            continue
        label += 1
        stack, count = [(y0, x0)], 0
        labels[y0, x0] = label
        while stack:
            y, x = stack.pop()
            count += 1
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not labels[ny, nx]:
                    labels[ny, nx] = label
                    stack.append((ny, nx))
        if count > best_size:
            best, best_size = label, count
    return labels == best


def read(image: Any) -> Reading:
    """Read colour, shape, position and size out of an image (PIL image or (H, W, 3) array)."""
    arr = _as_array(image)
    h, w, _ = arr.shape
    # 1. background from the border
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    bg = np.median(border, axis=0)
    dist = np.linalg.norm(arr - bg, axis=2)
    if dist.max() < _MIN_CONTRAST:
        return Reading(None, None, None, None)
    # 2. shape colour from the most distinct pixels
    fg = np.median(arr[dist >= 0.8 * dist.max()], axis=0)
    axis = fg - bg
    # 3. coverage by projection onto the background -> shape colour line, largest blob only
    alpha = np.clip(((arr - bg) @ axis) / (axis @ axis), 0.0, 1.0)
    blob = _largest_blob(alpha > 0.5)
    grown = blob.copy()  # keep the anti-aliased rim around the blob
    grown[1:] |= blob[:-1]
    grown[:-1] |= blob[1:]
    grown[:, 1:] |= blob[:, :-1]
    grown[:, :-1] |= blob[:, 1:]
    alpha = np.where(grown, alpha, 0.0)
    area = alpha.sum()
    if area < 1.0:
        return Reading(None, None, None, None)
    # 4. colour and position
    colour = min(COLOURS, key=lambda c: float(np.linalg.norm(np.array(COLOURS[c]) - fg)))
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    cx, cy = float((alpha * xs).sum() / area), float((alpha * ys).sum() / area)
    position = min(POSITIONS, key=lambda p: (POSITIONS[p][0] * w - cx) ** 2 + (POSITIONS[p][1] * h - cy) ** 2)
    # 5. shape from how much of its extent it fills, and (triangles) how bottom-heavy it is
    cols, rows = alpha.max(axis=0), alpha.max(axis=1)
    width, height = cols.sum(), rows.sum()
    fill = float(area / max(width * height, 1e-6))
    skew = float((cy - (rows * ys[:, 0]).sum() / height) / height)
    if skew > _TRIANGLE_SKEW or fill < (_FILL["triangle"] + _FILL["circle"]) / 2:
        shape = "triangle"
    else:
        shape = "circle" if fill < (_FILL["circle"] + _FILL["square"]) / 2 else "square"
    # 6. size from the half extent the area implies
    half = float(np.sqrt(area / _AREA_PER_HALF2[shape])) / ((w + h) / 2)
    size = "small" if half < (SIZES["small"] + SIZES["large"]) / 2 else "large"
    return Reading(colour, shape, position, size, fill, skew, (cx, cy))


def check(image: Any, caption: str) -> Score:
    """Score one image against its caption."""
    want = parse_caption(caption)
    got = read(image)

    def ok(wanted: str | None, seen: str | None) -> bool:
        return wanted is None or wanted == seen

    return Score(got, ok(want.colour, got.colour), ok(want.shape, got.shape), ok(want.position, got.position),
                 ok(want.size, got.size))


def score_many(images: list[Any], captions: list[str]) -> dict[str, float]:
    """Accuracy of colour, shape, position, size and all three together over many images."""
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    scores = [check(img, cap) for img, cap in zip(images, captions, strict=True)]
    n = max(len(scores), 1)
    return {"color_acc": sum(s.colour_ok for s in scores) / n, "shape_acc": sum(s.shape_ok for s in scores) / n,
            "position_acc": sum(s.position_ok for s in scores) / n, "size_acc": sum(s.size_ok for s in scores) / n,
            "all_acc": sum(s.all_ok for s in scores) / n}
