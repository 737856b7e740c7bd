"""A numpy source: one .npz file with `<split>_images` (uint8, (N, H, W) or (N, H, W, C))
and optionally `<split>_labels` (integers, (N,)), e.g. train_images / test_images.

    np.savez("mydata.npz", train_images=x_train, train_labels=y_train, test_images=x_test)
    gandistill train-teacher ... --set data.source=npz --set data.path=mydata.npz

Read with allow_pickle=False. Images must be uint8 in [0, 255]: float images are refused
with the conversion to use, so [-1, 1] data are never silently mapped to about -1.
"""
from __future__ import annotations

import os

import numpy as np

from gandistill_jax.data.arrays import check_images
from gandistill_jax.data.errors import DataError


def load_npz_split(path: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 (N, H, W, C), labels int64 (N,)) of `split` in the .npz at `path`."""
  if not os.path.isfile(path):
    raise DataError(f"data.path={path!r} is not a file; data.source='npz' needs an .npz file")
  try:
    f = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise DataError(f"{path}: not a readable .npz file ({e})") from None
  with f:
    key = f"{split}_images"
    if key not in f.files:
      raise DataError(f"{path} has no array {key!r} (it has {sorted(f.files)}); store the split's images "
                      f"as {key} (uint8, N x H x W [x C]) and optionally its labels as {split}_labels")
    images = f[key]
    labels = f[f"{split}_labels"] if f"{split}_labels" in f.files else np.zeros(len(images), np.int64)
  return check_images(images, labels, f"{path}: {key}")
