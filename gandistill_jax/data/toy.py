"""The ring of 8 Gaussians (Metz et al. 2017, "Unrolled Generative Adversarial Networks")
and its mode-coverage metric as used by VEEGAN (Srivastava et al. 2017) and PacGAN."""
from __future__ import annotations

import numpy as np

RADIUS, STD, MODES = 2.0, 0.02, 8


def ring_centers(modes: int = MODES, radius: float = RADIUS) -> np.ndarray:
  angles = 2 * np.pi * np.arange(modes) / modes
  return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)


def ring_batch(seed: int, step: int, batch: int, modes: int = MODES, std: float = STD) -> np.ndarray:
  """Batch `step` of the endless ring stream; a pure function of (seed, step)."""
  rng = np.random.default_rng([seed, step])
  centers = ring_centers(modes)[rng.integers(0, modes, batch)]
  return (centers + std * rng.standard_normal((batch, 2))).astype(np.float32)


def mode_coverage(samples: np.ndarray, modes: int = MODES, std: float = STD,
                  min_per_mode: int = 20) -> tuple[int, float]:
  """(modes covered, fraction of high-quality samples).

  A sample is high quality when it lies within 3 std of its nearest mode; a mode is
  covered when at least `min_per_mode` high-quality samples fall on it.
  """
  centers = ring_centers(modes)
  dist = np.linalg.norm(samples[:, None, :] - centers[None], axis=-1)
  nearest, good = dist.argmin(1), dist.min(1) <= 3 * std
  counts = np.bincount(nearest[good], minlength=modes)
  return int((counts >= min_per_mode).sum()), float(good.mean())
