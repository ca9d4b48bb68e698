#!/usr/bin/env python3
"""Pictures of handwritten digits as people make them, from MNIST's test
digits, for checking how `scratchnet predict` prepares images:

- photo: a digit written on paper and photographed: coloured ink (black,
  blue, red) on tinted paper, a lighting gradient in a random direction, a
  shadow band along a random edge, sensor noise, JPEG; the digit 15-40% of
  the frame's height, slightly rotated, anywhere in the frame;
- canvas: a drawing exported from a canvas: black ink on a transparent
  background (RGBA PNG), the digit 40-80% of the canvas;
- clean: a clean scan: dark ink on white, PNG.

Each file is named INDEX-label-DIGIT.EXT. The same seed gives the same set.

    pip install numpy pillow
    python3 scripts/digit_photos.py photo OUT_DIR [--count 100] [--seed 1] [--first 0]
"""

import argparse
import gzip
import os

import numpy as np
from PIL import Image, ImageFilter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST = os.path.join(ROOT, "data", "mnist")

PAPERS = [(250, 248, 240), (240, 235, 215), (225, 235, 245), (235, 235, 235), (245, 230, 230)]
INKS = [(25, 25, 30), (20, 40, 150), (40, 40, 110), (150, 25, 30)]


def test_digits():
    with gzip.open(os.path.join(MNIST, "t10k-images-idx3-ubyte.gz")) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(os.path.join(MNIST, "t10k-labels-idx1-ubyte.gz")) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images, labels


def digit_layer(digit, height, angle):
    """The 28x28 digit scaled so that its 20-pixel box is `height` pixels
    tall, rotated by `angle` degrees: ink coverage in 0..1."""
    side = max(8, round(height * 28 / 20))
    img = Image.fromarray(digit).resize((side, side), Image.BILINEAR)
    img = img.rotate(angle, resample=Image.BILINEAR, expand=True)
    return np.asarray(img, np.float64) / 255.0


def place(shape, layer, rng, margin):
    """`layer` at a random place of a `shape` frame, `margin` of it kept
    clear on each side where it fits."""
    h, w = shape
    lh, lw = layer.shape
    out = np.zeros(shape)
    y0 = rng.integers(int(h * margin), max(int(h * margin) + 1, h - lh - int(h * margin)))
    x0 = rng.integers(int(w * margin), max(int(w * margin) + 1, w - lw - int(w * margin)))
    ys, xs = slice(y0, min(h, y0 + lh)), slice(x0, min(w, x0 + lw))
    out[ys, xs] = layer[: ys.stop - ys.start, : xs.stop - xs.start]
    return out


def photo(digit, rng):
    h = int(rng.integers(360, 720))
    w = int(h * rng.uniform(1.0, 1.45))
    ink = place((h, w), digit_layer(digit, h * rng.uniform(0.15, 0.40), rng.uniform(-8, 8)),
                rng, 0.05)
    ink *= rng.uniform(0.8, 1.0)
    paper = np.array(PAPERS[rng.integers(len(PAPERS))], np.float64)
    colour = np.array(INKS[rng.integers(len(INKS))], np.float64)
    img = paper * (1 - ink[..., None]) + colour * ink[..., None]
    # Light falling off across the sheet, in a random direction.
    yy, xx = np.mgrid[0:h, 0:w]
    a = rng.uniform(0, 2 * np.pi)
    t = (np.cos(a) * xx / w + np.sin(a) * yy / h)
    t = (t - t.min()) / (t.max() - t.min())
    light = 1 - rng.uniform(0.15, 0.45) * t
    # A shadow band along one edge, its border softened.
    edge = rng.integers(4)
    depth = rng.uniform(0.10, 0.30)
    dist = [yy / h, 1 - yy / h, xx / w, 1 - xx / w][edge]
    band = Image.fromarray(((dist < depth) * 255).astype(np.uint8))
    band = np.asarray(band.filter(ImageFilter.GaussianBlur(rng.uniform(1, 6))), np.float64) / 255
    light *= 1 - rng.uniform(0.35, 0.6) * band
    img = img * light[..., None] + rng.normal(0, rng.uniform(2, 6), img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)), "jpg", int(rng.integers(60, 90))


def canvas(digit, rng):
    side = int(rng.integers(200, 500))
    ink = place((side, side), digit_layer(digit, side * rng.uniform(0.4, 0.8), 0.0), rng, 0.02)
    rgba = np.zeros((side, side, 4), np.uint8)
    rgba[..., 3] = np.clip(ink * 255, 0, 255).astype(np.uint8)
    return Image.fromarray(rgba), "png", None


def clean(digit, rng):
    h = int(rng.integers(100, 200))
    w = int(h * rng.uniform(1.0, 1.3))
    ink = place((h, w), digit_layer(digit, h * rng.uniform(0.3, 0.7), 0.0), rng, 0.05)
    grey = 255 * (1 - ink)
    return Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)), "png", None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=["photo", "canvas", "clean"])
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--first", type=int, default=0, help="the first MNIST test digit used")
    args = ap.parse_args()
    images, labels = test_digits()
    make = {"photo": photo, "canvas": canvas, "clean": clean}[args.kind]
    rng = np.random.default_rng([args.seed, ["photo", "canvas", "clean"].index(args.kind)])
    os.makedirs(args.out, exist_ok=True)
    for k in range(args.count):
        i = args.first + k
        img, ext, quality = make(images[i], rng)
        path = os.path.join(args.out, f"{i:05}-label-{labels[i]}.{ext}")
        if quality is None:
            img.save(path)
        else:
            img.save(path, quality=quality)


if __name__ == "__main__":
    main()
