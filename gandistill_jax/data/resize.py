"""Bringing images to the model's square size: one rule for every source.

    resize_images(images, size, filter="area", crop=0)

1. `crop` > 0: the centre crop x crop (CelebA's usual 140 before resizing); otherwise a
   non-square image is centre-cropped to its shorter side (as torchvision's
   Resize + CenterCrop).
2. Already size x size: unchanged. With filter "area", a square image 2 or 4 pixels smaller
   is padded with black (28 -> 32 keeps MNIST-style digits' pixels, as DCGAN code does).
3. Otherwise `tf.image.resize` with `antialias=True` (the kernel is widened by the scale
   factor when shrinking, so no filter aliases):

   area      area (box) averaging when shrinking, bilinear when enlarging (the default)
   bilinear  triangle kernel
   bicubic   Keys cubic (a = -0.5); clean-fid (Parmar et al. 2022) recommends an antialiased
             bicubic resize for FID
   lanczos3  Lanczos, radius 3
   nearest   nearest neighbour (no antialiasing)

   Results are rounded to uint8. The filter changes the pixels and hence FID (clean-fid
   measures several FID points between filters), so it is part of the data's digest and of
   the run's config (`data.resize_filter`).
"""
from __future__ import annotations

import numpy as np

FILTERS = ("area", "bilinear", "bicubic", "lanczos3", "nearest")


def check_filter(name: str) -> None:
  from gandistill_jax.data.errors import DataError
  if name not in FILTERS:
    raise DataError(f"data.resize_filter={name!r} is unknown; use one of {', '.join(FILTERS)}")


def centre_crop(images: np.ndarray, crop: int = 0) -> np.ndarray:
  """(N, H, W, C) -> the centre crop x crop, or the centre square of side min(H, W)."""
  h, w = images.shape[1:3]
  crop = crop or min(h, w)
  if (h, w) == (crop, crop):
    return images
  top, left = (h - crop) // 2, (w - crop) // 2
  return images[:, top:top + crop, left:left + crop]


def resize_images(images: np.ndarray, size: int, filter: str = "area", crop: int = 0) -> np.ndarray:
  """uint8 (N, H, W, C) -> uint8 (N, size, size, C) by the rule in the module docstring."""
  check_filter(filter)
  images = centre_crop(images, crop)
  h = images.shape[1]
  if h == size:
    return images
  if filter == "area" and size > h and (size - h) % 2 == 0 and size - h <= 4:
    p = (size - h) // 2
    return np.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))
  import tensorflow as tf   # only where images are resized
  method = ("area" if size < h else "bilinear") if filter == "area" else filter
  out = tf.image.resize(images, (size, size), method=method, antialias=method != "nearest")
  return np.clip(np.round(out.numpy()), 0, 255).astype(np.uint8)
