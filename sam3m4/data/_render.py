"""Drawing primitives for the synthetic SA-Co data: concept shapes, cluttered backgrounds, label maps.

Shapes are drawn with Pillow's ImageDraw (no anti-aliasing, solid fill). The same draw call paints the
RGB image and a separate 'L' label map (value k + 1 for instance k; later instances overwrite earlier
ones), so the visible mask of instance k is exactly ``labels == k + 1`` and matches the drawn pixels.
Background clutter uses muted colours (channel spread <= 44) far from every concept colour (spread >= 175).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

# Concept colours: saturated and far apart in RGB (pairwise Euclidean distance >= 180).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 35, 35),
    "green": (35, 185, 55),
    "blue": (40, 70, 225),
    "yellow": (235, 215, 40),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
STAR_INNER = 0.45          # inner / outer radius of the 5-point star
COLOUR_JITTER = 14         # per-instance colour jitter, +- per channel
# shape area = AREA_FACTOR[shape] * R^2, R = circumradius (outer radius for the star)
AREA_FACTOR = {
    "circle": math.pi,
    "square": 2.0,
    "triangle": 3 * math.sqrt(3) / 4,
    "star": 5 * STAR_INNER * math.sin(math.pi / 5),
}


@dataclass
class Shape:
    """One concept instance as drawn in one image or frame (pixel coordinates, x right, y down)."""

    shape: str                      # one of SHAPES
    colour: str                     # one of COLOURS
    rgb: tuple[int, int, int]       # jittered fill colour actually drawn
    cx: float
    cy: float
    radius: float                   # circumradius R in pixels
    angle: float                    # rotation in radians (ignored for circles)

    @property
    def phrase(self) -> str:
        return f"{self.colour} {self.shape}"


def radius_for_area(shape: str, area: float) -> float:
    """Circumradius (pixels) of a shape whose full area is ``area`` square pixels."""
    return math.sqrt(area / AREA_FACTOR[shape])


def outline(s: Shape) -> list[tuple[float, float]]:
    """Polygon vertices of a square, triangle or star (circles are drawn as ellipses)."""
    if s.shape == "square":
        radii, n = [s.radius], 4
    elif s.shape == "triangle":
        radii, n = [s.radius], 3
    elif s.shape == "star":
        radii, n = [s.radius, s.radius * STAR_INNER], 10
    else:
        raise ValueError(f"outline: no polygon for shape {s.shape!r}")
    pts = []
    for i in range(n):
        a = s.angle + 2 * math.pi * i / n - math.pi / 2
        r = radii[i % len(radii)]
        pts.append((s.cx + r * math.cos(a), s.cy + r * math.sin(a)))
    return pts


def draw_shape(draw: ImageDraw.ImageDraw, s: Shape, fill) -> None:
    """Draw one shape, solid fill, no outline, no anti-aliasing."""
    if s.shape == "circle":
        draw.ellipse([s.cx - s.radius, s.cy - s.radius, s.cx + s.radius, s.cy + s.radius], fill=fill)
    else:
        draw.polygon(outline(s), fill=fill)


def label_map(shapes: list[Shape], size: int) -> np.ndarray:
    """(size, size) uint8 label map: 0 background, k + 1 where instance k is the top-most shape."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for k, s in enumerate(shapes):
        draw_shape(draw, s, k + 1)
    return np.asarray(canvas)


def concept_rgb(rng: np.random.Generator, colour: str) -> tuple[int, int, int]:
    """A concept colour with a slight per-instance jitter."""
    base = np.array(COLOURS[colour])
    jitter = rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3)
    return tuple(int(v) for v in np.clip(base + jitter, 0, 255))


def muted_rgb(rng: np.random.Generator) -> tuple[int, int, int]:
    """A low-saturation colour (grey plus a small tint): never close to a concept colour."""
    grey = rng.uniform(55, 200)
    tint = rng.uniform(-22, 22, size=3)
    return tuple(int(v) for v in np.clip(grey + tint, 0, 255))


def background(rng: np.random.Generator, size: int) -> Image.Image:
    """Textured background: smooth muted colour gradient + clutter lines/blobs (RGB, size x size).

    Noise is added per image/frame by :func:`add_noise`, so a video can share one background.
    """
    grid = np.array([[muted_rgb(rng) for _ in range(3)] for _ in range(3)], dtype=np.uint8)  # (3, 3, 3)
    img = Image.fromarray(grid, "RGB").resize((size, size), Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 7))):
        colour = muted_rgb(rng)
        if rng.random() < 0.5:  # a straight line across part of the image
            x0, y0, x1, y1 = (float(v) for v in rng.uniform(0, size, size=4))
            draw.line([x0, y0, x1, y1], fill=colour, width=int(rng.integers(1, max(2, size // 40) + 1)))
        else:  # an irregular blob: a jittered, elongated ellipse outline
            cx, cy = rng.uniform(0, size, size=2)
            rx, ry = rng.uniform(0.03, 0.14, size=2) * size
            rot = rng.uniform(0, 2 * math.pi)
            n = int(rng.integers(5, 9))
            pts = []
            for i in range(n):
                a = 2 * math.pi * i / n
                j = rng.uniform(0.6, 1.3)
                x, y = rx * j * math.cos(a), ry * j * math.sin(a)
                pts.append((cx + x * math.cos(rot) - y * math.sin(rot),
                            cy + x * math.sin(rot) + y * math.cos(rot)))
            draw.polygon(pts, fill=colour)
    return img


def add_noise(rng: np.random.Generator, rgb: np.ndarray, sigma: float = 4.0) -> np.ndarray:
    """Low-amplitude Gaussian noise. rgb: (H, W, 3) uint8 -> (H, W, 3) uint8."""
    noise = rng.standard_normal(rgb.shape, dtype=np.float32) * sigma  # (H, W, 3)
    return np.clip(rgb.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def compose(bg: Image.Image, shapes: list[Shape], labels: np.ndarray, rng: np.random.Generator,
            noise_sigma: float = 4.0) -> np.ndarray:
    """Draw shapes (in order, later on top) over a copy of bg, then add noise to the background only.

    labels: (H, W) uint8 from :func:`label_map` of the same shapes. Returns (H, W, 3) uint8 RGB; shapes
    keep their flat jittered colour so the concept stays learnable.
    """
    img = bg.copy()
    draw = ImageDraw.Draw(img)
    for s in shapes:
        draw_shape(draw, s, s.rgb)
    rgb = np.asarray(img)
    noisy = add_noise(rng, np.asarray(bg), noise_sigma)
    covered = labels > 0                             # (H, W)
    return np.where(covered[..., None], rgb, noisy)
