"""Sample grids as PNG (images) or scatter plots (2-D points)."""
from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image

from gandistill_jax.data.arrays import to_uint8


def grid(images, ncol: int | None = None, pad: int = 1) -> np.ndarray:
  """(N, H, W, C) floats in [-1, 1] -> one uint8 (rows*(H+pad), cols*(W+pad), C) mosaic."""
  x = to_uint8(images)
  n, h, w, c = x.shape
  ncol = ncol or math.ceil(math.sqrt(n))
  nrow = math.ceil(n / ncol)
  out = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, np.uint8)
  for i in range(n):
    r, q = divmod(i, ncol)
    out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = x[i]
  return out


def save_samples(samples, path: str, ncol: int | None = None, scale: int = 2) -> None:
  """A PNG of `samples`: an image grid, or a scatter plot for (N, 2) points."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  samples = np.asarray(samples)
  if samples.ndim == 2:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(samples[:, 0], samples[:, 1], s=2)
    ax.set_xlim(-2.6, 2.6)
    ax.set_ylim(-2.6, 2.6)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return
  g = grid(samples, ncol)
  img = Image.fromarray(g[..., 0] if g.shape[-1] == 1 else g)
  img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(path)
