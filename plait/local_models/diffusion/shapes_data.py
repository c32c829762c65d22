"""Procedural captioned scenes for plait's own text-to-image model.

One shape (circle, square, triangle) in one of eight colours, small or large, at one of five
positions, on a plain neutral background, with a caption such as ``"a small red circle on the
left"``. Everything comes from a seed, so the data set is code, not files. The rules here are
the ground truth that :mod:`plait.local_models.diffusion.shapes_checker` scores generated images against.

Four colour-shape pairs (:data:`HELD_OUT_PAIRS`) never appear in training: captions that use
them test whether the model composes colour, shape and position it has only seen apart.

Example::

    from plait.local_models.diffusion.shapes_data import sample_scenes, render
    scenes = sample_scenes(4, seed=0)
    images = render(scenes)          # uint8 array, (4, 32, 32, 3)
    [s.caption for s in scenes]      # ["a large green square at the top", ...]
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = 32
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 135, 20),
    "yellow": (235, 215, 25),
    "green": (30, 165, 50),
    "cyan": (30, 200, 215),
    "blue": (30, 60, 215),
    "purple": (135, 40, 185),
    "pink": (245, 120, 190),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {"white": (245, 245, 245), "grey": (128, 128, 128), "black": (15, 15, 15)}
SHAPES = ("circle", "square", "triangle")
#: Shape centre as a fraction of the image side, (x, y).
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25), "bottom": (0.5, 0.75), "center": (0.5, 0.5),
}
POSITION_PHRASES: dict[str, tuple[str, ...]] = {
    "left": ("on the left",), "right": ("on the right",), "top": ("at the top",),
    "bottom": ("at the bottom",), "center": ("in the center", "in the middle"),
}
#: Half the shape's extent as a fraction of the image side.
SIZES: dict[str, float] = {"small": 0.12, "large": 0.19}
#: Colour-shape pairs that never appear in training.
HELD_OUT_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {("red", "triangle"), ("blue", "circle"), ("yellow", "square"), ("purple", "triangle")})
JITTER = 0.04  # random shift of the centre, fraction of the side
SIZE_JITTER = 0.1  # random relative change of the size
_SUPERSAMPLE = 4  # sub-pixels per pixel side, for anti-aliased edges


@dataclass(frozen=True)
class Scene:
    """One drawable scene: what the caption says plus the exact geometry."""

    colour: str
    shape: str
    position: str
    size: str
    background: str
    cx: float  # centre in pixels (the centroid, for every shape)
    cy: float
    half: float  # half extent in pixels
    caption: str

    @property
    def unseen(self) -> bool:
        return (self.colour, self.shape) in HELD_OUT_PAIRS


def make_caption(colour: str, shape: str, position: str, size: str | None, phrase: int = 0) -> str:
    """The caption grammar: ``a [small|large] COLOUR SHAPE POSITION-PHRASE``."""
    words = ["a"] + ([size] if size else []) + [colour, shape, POSITION_PHRASES[position][phrase]]
    return " ".join(words)


def all_captions() -> list[str]:
    """Every caption the grammar can produce (the text encoder's whole vocabulary of prompts)."""
    return sorted({make_caption(c, s, p, z, i) for c in COLOURS for s in SHAPES for p in POSITIONS
                   for z in (None, *SIZES) for i in range(len(POSITION_PHRASES[p]))})


def sample_scenes(n: int, seed: int, split: str = "train", size: int = IMAGE_SIZE) -> list[Scene]:
    """Draw ``n`` random scenes.

    Args:
        split: ``"train"`` (held-out colour-shape pairs excluded), ``"unseen"`` (only held-out
            pairs) or ``"any"``.
    """
    if split not in ("train", "unseen", "any"):
        raise ValueError(f"split must be 'train', 'unseen' or 'any', not {split!r}")
    rng = np.random.default_rng(seed)
    pairs = [(c, s) for c in COLOURS for s in SHAPES
             if split == "any" or ((c, s) in HELD_OUT_PAIRS) == (split == "unseen")]
    scenes = []
    for _ in range(n):
        colour, shape = pairs[rng.integers(len(pairs))]
        position = list(POSITIONS)[rng.integers(len(POSITIONS))]
        size_name = list(SIZES)[rng.integers(len(SIZES))]
        background = list(BACKGROUNDS)[rng.integers(len(BACKGROUNDS))]
        fx, fy = POSITIONS[position]
        cx = (fx + rng.uniform(-JITTER, JITTER)) * size
        cy = (fy + rng.uniform(-JITTER, JITTER)) * size
        half = SIZES[size_name] * size * rng.uniform(1 - SIZE_JITTER, 1 + SIZE_JITTER)
        # A third of the captions leave the size out (then either size is right).
        said_size = None if rng.random() < 1 / 3 else size_name
        phrase = int(rng.integers(len(POSITION_PHRASES[position])))
        scenes.append(Scene(colour, shape, position, size_name, background, float(cx), float(cy), float(half),
                            make_caption(colour, shape, position, said_size, phrase)))
    return scenes


def _coverage(scenes: list[Scene], size: int) -> np.ndarray:
    """Fraction of each pixel the shape covers, (n, size, size), by supersampling."""
    k = _SUPERSAMPLE
    grid = (np.arange(size * k) + 0.5) / k  # sub-pixel centres in pixel units
    x = grid[None, None, :]
    y = grid[None, :, None]
    cx = np.array([s.cx for s in scenes])[:, None, None]
    cy = np.array([s.cy for s in scenes])[:, None, None]
    h = np.array([s.half for s in scenes])[:, None, None]
    dx, dy = x - cx, y - cy
    circle = dx**2 + dy**2 <= h**2
    square = (np.abs(dx) <= h) & (np.abs(dy) <= h)
    # Upward triangle with its centroid at (cx, cy): apex at -1.1h, base at +0.55h, half-width h.
    top, base = -1.1 * h, 0.55 * h
    frac = (dy - top) / (base - top)  # 0 at the apex, 1 at the base
    triangle = (dy <= base) & (dy >= top) & (np.abs(dx) <= frac * h)
    kind = np.array([SHAPES.index(s.shape) for s in scenes])[:, None, None]
    inside = np.where(kind == 0, circle, np.where(kind == 1, square, triangle))
    n = len(scenes)
    return inside.reshape(n, size, k, size, k).mean(axis=(2, 4))


def render(scenes: list[Scene], size: int = IMAGE_SIZE) -> np.ndarray:
    """Draw the scenes: uint8 RGB array of shape (n, size, size, 3), anti-aliased."""
    if not scenes:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    alpha = _coverage(scenes, size)[..., None]
    fg = np.array([COLOURS[s.colour] for s in scenes], dtype=np.float64)[:, None, None, :]
    bg = np.array([BACKGROUNDS[s.background] for s in scenes], dtype=np.float64)[:, None, None, :]
    return np.round(bg * (1 - alpha) + fg * alpha).astype(np.uint8)


@dataclass(frozen=True)
class CaptionParts:
    """What a caption asks for; ``None`` where it does not say."""

    colour: str | None
    shape: str | None
    position: str | None
    size: str | None

    @property
    def unseen(self) -> bool:
        return (self.colour, self.shape) in HELD_OUT_PAIRS


_SYNONYMS = {"centre": "center", "middle": "center", "grey": "grey", "gray": "grey", "upper": "top",
             "lower": "bottom", "big": "large", "tiny": "small", "violet": "purple", "box": "square",
             "rectangle": "square", "disc": "circle", "dot": "circle", "ball": "circle"}


def parse_caption(text: str) -> CaptionParts:
    """Read colour, shape, position and size words out of free text (first match of each wins)."""
    colour = shape = position = size = None
    known = set(COLOURS) | set(SHAPES) | set(POSITIONS) | set(SIZES)
    for raw in re.findall(r"[a-z]+", text.lower()):
        forms = [raw, raw[:-1] if raw.endswith("s") else raw, raw[:-2] if raw.endswith("es") else raw]
        word = next((w for w in (_SYNONYMS.get(f, f) for f in forms) if w in known), raw)
        if colour is None and word in COLOURS:
            colour = word
        elif shape is None and word in SHAPES:
            shape = word
        elif position is None and word in POSITIONS:
            position = word
        elif size is None and word in SIZES:
            size = word
    return CaptionParts(colour, shape, position, size)


def benchmark_scenes(n: int, seed: int = 1234) -> list[Scene]:
    """The benchmark's held-out set: half new scenes of seen pairs, half of unseen pairs.

    Seeds differ from any training seed stream (training draws from ``seed`` 0..), and the
    unseen half uses colour-shape pairs the model never saw.
    """
    unseen = n // 2
    return sample_scenes(n - unseen, seed=10_000_000 + seed) + sample_scenes(unseen, seed=20_000_000 + seed,
                                                                            split="unseen")
