"""An image-folder source: PNG/JPEG files in a folder, optionally in class subfolders.

    root/*.png                 -> label 0 for every image
    root/<class>/*.png         -> labels 0..K-1 by sorted class-folder name

All images must share one size and channel count; the first odd one is named in the error.
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from gandistill_jax.data.errors import DataError

EXTENSIONS = (".png", ".jpg", ".jpeg")


def list_images(root: str) -> tuple[list[str], list[int], list[str]]:
  """(paths, labels, class names) of the images below `root`, in a fixed order."""
  if not os.path.isdir(root):
    raise DataError(f"image folder {root} does not exist")
  is_image = lambda n: n.lower().endswith(EXTENSIONS)
  classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
  paths, labels = [os.path.join(root, n) for n in sorted(os.listdir(root)) if is_image(n)], []
  labels = [0] * len(paths)
  for k, c in enumerate(classes):
    files = sorted(n for n in os.listdir(os.path.join(root, c)) if is_image(n))
    paths += [os.path.join(root, c, n) for n in files]
    labels += [k] * len(files)
  if not paths:
    raise DataError(f"image folder {root} holds no {'/'.join(EXTENSIONS)} files")
  return paths, labels, classes


def load_image_folder(root: str) -> tuple[np.ndarray, np.ndarray]:
  """(images (N, H, W, C) uint8, labels (N,) int64) from an image folder."""
  paths, labels, _ = list_images(root)
  images = []
  for path in paths:
    try:
      img = tf.io.decode_image(tf.io.read_file(path), expand_animations=False).numpy()
    except tf.errors.OpError as e:
      raise DataError(f"{path}: not a readable image ({e.message.splitlines()[0]})") from None
    if images and img.shape != images[0].shape:
      raise DataError(f"{path}: image is {img.shape}, but {paths[0]} is {images[0].shape}; "
                      f"all images in a folder must share one size")
    images.append(img)
  return np.stack(images), np.asarray(labels, np.int64)
