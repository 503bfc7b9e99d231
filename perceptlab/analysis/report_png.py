"""A bar chart of the evaluation as a PNG, with numpy and zlib only.

The core is Qt-free and matplotlib is not a dependency, so this module draws
into a (H, W, 3) uint8 array -- rectangles, lines and text in a built-in 5x7
bitmap font (upper case, digits, a little punctuation) -- and encodes it as
a PNG (8-bit RGB, no interlace, filter 0 per row, one zlib IDAT chunk).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

# --------------------------------------------------------------------------
# PNG
# --------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an (H, W, 3) uint8 image."""
    rgb = np.ascontiguousarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"encode_png expects an (H, W, 3) uint8 array, got {rgb.shape} {rgb.dtype}")
    h, w, _ = rgb.shape
    if h < 1 or w < 1:
        raise ValueError("encode_png: empty image")
    raw = np.zeros((h, 1 + 3 * w), dtype=np.uint8)  # filter byte 0 ("None") then the row
    raw[:, 1:] = rgb.reshape(h, 3 * w)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(raw.tobytes(), 9))
            + _chunk(b"IEND", b""))


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    path = Path(path)
    path.write_bytes(encode_png(rgb))
    return path


# --------------------------------------------------------------------------
# 5x7 bitmap font
# --------------------------------------------------------------------------

_GLYPHS = {
    "A": ".###.|#...#|#...#|#####|#...#|#...#|#...#",
    "B": "####.|#...#|#...#|####.|#...#|#...#|####.",
    "C": ".###.|#...#|#....|#....|#....|#...#|.###.",
    "D": "####.|#...#|#...#|#...#|#...#|#...#|####.",
    "E": "#####|#....|#....|####.|#....|#....|#####",
    "F": "#####|#....|#....|####.|#....|#....|#....",
    "G": ".###.|#...#|#....|#.###|#...#|#...#|.####",
    "H": "#...#|#...#|#...#|#####|#...#|#...#|#...#",
    "I": ".###.|..#..|..#..|..#..|..#..|..#..|.###.",
    "J": "..###|...#.|...#.|...#.|...#.|#..#.|.##..",
    "K": "#...#|#..#.|#.#..|##...|#.#..|#..#.|#...#",
    "L": "#....|#....|#....|#....|#....|#....|#####",
    "M": "#...#|##.##|#.#.#|#.#.#|#...#|#...#|#...#",
    "N": "#...#|#...#|##..#|#.#.#|#..##|#...#|#...#",
    "O": ".###.|#...#|#...#|#...#|#...#|#...#|.###.",
    "P": "####.|#...#|#...#|####.|#....|#....|#....",
    "Q": ".###.|#...#|#...#|#...#|#.#.#|#..#.|.##.#",
    "R": "####.|#...#|#...#|####.|#.#..|#..#.|#...#",
    "S": ".####|#....|#....|.###.|....#|....#|####.",
    "T": "#####|..#..|..#..|..#..|..#..|..#..|..#..",
    "U": "#...#|#...#|#...#|#...#|#...#|#...#|.###.",
    "V": "#...#|#...#|#...#|#...#|#...#|.#.#.|..#..",
    "W": "#...#|#...#|#...#|#.#.#|#.#.#|#.#.#|.#.#.",
    "X": "#...#|#...#|.#.#.|..#..|.#.#.|#...#|#...#",
    "Y": "#...#|#...#|.#.#.|..#..|..#..|..#..|..#..",
    "Z": "#####|....#|...#.|..#..|.#...|#....|#####",
    "0": ".###.|#...#|#..##|#.#.#|##..#|#...#|.###.",
    "1": "..#..|.##..|..#..|..#..|..#..|..#..|.###.",
    "2": ".###.|#...#|....#|...#.|..#..|.#...|#####",
    "3": "#####|...#.|..#..|...#.|....#|#...#|.###.",
    "4": "...#.|..##.|.#.#.|#..#.|#####|...#.|...#.",
    "5": "#####|#....|####.|....#|....#|#...#|.###.",
    "6": "..##.|.#...|#....|####.|#...#|#...#|.###.",
    "7": "#####|....#|...#.|..#..|.#...|.#...|.#...",
    "8": ".###.|#...#|#...#|.###.|#...#|#...#|.###.",
    "9": ".###.|#...#|#...#|.####|....#|...#.|.##..",
    " ": ".....|.....|.....|.....|.....|.....|.....",
    ".": ".....|.....|.....|.....|.....|.##..|.##..",
    ",": ".....|.....|.....|.....|.##..|..#..|.#...",
    ":": ".....|.##..|.##..|.....|.##..|.##..|.....",
    "-": ".....|.....|.....|#####|.....|.....|.....",
    "+": ".....|..#..|..#..|#####|..#..|..#..|.....",
    "_": ".....|.....|.....|.....|.....|.....|#####",
    "(": "...#.|..#..|.#...|.#...|.#...|..#..|...#.",
    ")": ".#...|..#..|...#.|...#.|...#.|..#..|.#...",
    "[": ".###.|.#...|.#...|.#...|.#...|.#...|.###.",
    "]": ".###.|...#.|...#.|...#.|...#.|...#.|.###.",
    "/": ".....|....#|...#.|..#..|.#...|#....|.....",
    "%": "##...|##..#|...#.|..#..|.#...|#..##|...##",
    "=": ".....|.....|#####|.....|#####|.....|.....",
    "<": "...#.|..#..|.#...|#....|.#...|..#..|...#.",
    ">": ".#...|..#..|...#.|....#|...#.|..#..|.#...",
    "#": ".#.#.|.#.#.|#####|.#.#.|#####|.#.#.|.#.#.",
    "*": ".....|..#..|#.#.#|.###.|#.#.#|..#..|.....",
    "?": ".###.|#...#|....#|...#.|..#..|.....|..#..",
    "!": "..#..|..#..|..#..|..#..|..#..|.....|..#..",
    "'": "..#..|..#..|.#...|.....|.....|.....|.....",
}

GLYPH_W, GLYPH_H = 5, 7


def _glyph(ch: str) -> np.ndarray:
    rows = _GLYPHS.get(ch.upper(), _GLYPHS["?"]).split("|")
    return np.array([[c == "#" for c in r] for r in rows], dtype=bool)  # (7, 5)


_FONT = {ch: _glyph(ch) for ch in _GLYPHS}


def text_size(text: str, scale: int = 1) -> tuple[int, int]:
    """(width, height) in pixels of ``text`` drawn with :func:`draw_text`."""
    n = len(text)
    return (max(0, n * (GLYPH_W + 1) - 1) * scale, GLYPH_H * scale)


def draw_text(img: np.ndarray, x: int, y: int, text: str, color, scale: int = 1) -> None:
    """Draw ``text`` with its top-left corner at (x, y); clipped at the image border."""
    h, w, _ = img.shape
    color = np.asarray(color, dtype=np.uint8)
    for i, ch in enumerate(text):
        g = _FONT.get(ch.upper(), _FONT["?"])
        if scale > 1:
            g = np.kron(g, np.ones((scale, scale), dtype=bool))
        gx = x + i * (GLYPH_W + 1) * scale
        y0, y1 = max(0, y), min(h, y + g.shape[0])
        x0, x1 = max(0, gx), min(w, gx + g.shape[1])
        if y0 >= y1 or x0 >= x1:
            continue
        sub = g[y0 - y : y1 - y, x0 - gx : x1 - gx]
        img[y0:y1, x0:x1][sub] = color


def fill_rect(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, color) -> None:
    """Fill the half-open box [x0, x1) x [y0, y1), clipped."""
    h, w, _ = img.shape
    x0, x1 = max(0, min(x0, x1)), min(w, max(x0, x1))
    y0, y1 = max(0, min(y0, y1)), min(h, max(y0, y1))
    if x0 < x1 and y0 < y1:
        img[y0:y1, x0:x1] = np.asarray(color, dtype=np.uint8)


# --------------------------------------------------------------------------
# the chart
# --------------------------------------------------------------------------

#: Bar colours by method kind (see :mod:`perceptlab.analysis.evaluate`).
KIND_COLORS = {
    "knn": (150, 170, 200),
    "knn-cv": (70, 110, 170),
    "logreg-ae": (225, 125, 40),
    "logreg-logmel": (130, 90, 170),
    "majority": (160, 160, 160),
}


def bar_chart(rows: list[dict], title: str = "", scale: int = 2) -> np.ndarray:
    """A horizontal bar chart of scores in [0, 1] with +- error bars.

    Parameters
    ----------
    rows : list of dict
        Top to bottom: ``{"label", "value", "err", "kind"}`` (``kind`` picks
        the colour from :data:`KIND_COLORS`).
    title : str

    Returns
    -------
    numpy.ndarray
        (H, W, 3) uint8.
    """
    ch_w, ch_h = (GLYPH_W + 1) * scale, GLYPH_H * scale
    label_w = max([text_size(r["label"], scale)[0] for r in rows] + [ch_w * 6])
    left = 16 + label_w + 12
    plot_w = 600
    right = 16 + ch_w * 6
    bar_h, gap = 22, 10
    top = 20 + (ch_h + 14 if title else 0)
    plot_h = len(rows) * (bar_h + gap) + gap
    bottom = 16 + ch_h + 10
    width, height = left + plot_w + right, top + plot_h + bottom
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    black, grid = (0, 0, 0), (225, 225, 225)
    if title:
        draw_text(img, 16, 14, title, black, scale)

    def xpos(v: float) -> int:
        return left + int(round(min(1.0, max(0.0, v)) * plot_w))

    # grid and ticks every 0.1, labels every 0.2
    for i in range(11):
        x = xpos(i / 10)
        fill_rect(img, x, top, x + 1, top + plot_h, grid)
        fill_rect(img, x, top + plot_h, x + 1, top + plot_h + 5, black)
        if i % 2 == 0:
            s = f"{i / 10:.1f}"
            tw, _ = text_size(s, scale)
            draw_text(img, x - tw // 2, top + plot_h + 9, s, black, scale)
    for j, r in enumerate(rows):
        y0 = top + gap + j * (bar_h + gap)
        ym = y0 + bar_h // 2
        lw, _ = text_size(r["label"], scale)
        draw_text(img, left - 12 - lw, ym - ch_h // 2, r["label"], black, scale)
        v = float(r["value"]) if r.get("value") is not None else 0.0
        fill_rect(img, left, y0, xpos(v), y0 + bar_h, KIND_COLORS.get(r.get("kind"), (120, 120, 120)))
        err = float(r.get("err") or 0.0)
        end = v
        if err > 0:
            lo, hi = xpos(v - err), xpos(v + err)
            fill_rect(img, lo, ym - 1, hi + 1, ym + 1, black)  # whisker
            fill_rect(img, lo, ym - 6, lo + 2, ym + 6, black)  # caps
            fill_rect(img, hi - 1, ym - 6, hi + 1, ym + 6, black)
            end = v + err
        s = f"{v:.3f}"
        draw_text(img, xpos(end) + 10, ym - ch_h // 2, s, black, scale)
    # axes last, over the grid
    fill_rect(img, left, top, left + 2, top + plot_h + 1, black)
    fill_rect(img, left, top + plot_h, left + plot_w + 1, top + plot_h + 2, black)
    return img
