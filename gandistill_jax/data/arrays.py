"""A user's own images: numpy arrays or a tf.data.Dataset, checked and brought to the
pipeline's form (uint8 (N, H, W, C) in [0, 255], int64 labels).

Float images are refused rather than guessed at: the same array of [-1, 1] values would
otherwise be read as almost-black uint8.
"""
from __future__ import annotations

import hashlib

import numpy as np

from gandistill_jax.data.errors import DataError


def to_float(images: np.ndarray) -> np.ndarray:
  """uint8 [0, 255] -> float32 [-1, 1]."""
  return images.astype(np.float32) / 127.5 - 1.0


def to_uint8(images) -> np.ndarray:
  """float [-1, 1] -> uint8 [0, 255]."""
  return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def digest(images: np.ndarray, labels: np.ndarray | None = None) -> str:
  """SHA-256 of a dataset as read: its image shape and dtype, and the sorted SHA-256s of its
  (image, label) examples. The order of the examples does not count (TFDS and a folder list
  the same files in different orders); their pixels, labels and number do. Every cache of
  evaluation features and networks is keyed by it."""
  images = np.ascontiguousarray(images)
  labels = np.zeros(len(images), np.int64) if labels is None else np.asarray(labels, np.int64)
  rows = images.reshape(len(images), -1)
  examples = sorted(hashlib.sha256(rows[i].tobytes() + labels[i].tobytes()).digest() for i in range(len(rows)))
  h = hashlib.sha256(f"gandistill-data-v1 {images.dtype} {images.shape[1:]}".encode())
  for e in examples:
    h.update(e)
  return h.hexdigest()


def check_images(images, labels=None, what: str = "images") -> tuple[np.ndarray, np.ndarray]:
  """(images uint8 (N, H, W, C), labels int64 (N,)) from uint8 (N, H, W[, C]) images and
  optional integer labels; a DataError names what is wrong and the conversion to use."""
  images = np.asarray(images)
  if images.dtype != np.uint8:
    lo, hi = (float(images.min()), float(images.max())) if images.size and images.dtype.kind in "fiub" else (0.0, 0.0)
    raise DataError(f"{what} are {images.dtype} with values in [{lo:.3g}, {hi:.3g}]; give uint8 in [0, 255] "
                    f"(from [-1, 1]: np.round((x + 1) * 127.5).astype(np.uint8))")
  if images.ndim == 3:
    images = images[..., None]
  if images.ndim != 4 or len(images) == 0:
    raise DataError(f"{what} have shape {images.shape}; expected (N, H, W) or (N, H, W, C) with N > 0")
  labels = np.zeros(len(images), np.int64) if labels is None else np.asarray(labels)
  if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
    raise DataError(f"labels of {what} have shape {labels.shape} and dtype {labels.dtype}; expected "
                    f"({len(images)},) integers")
  return images, labels.astype(np.int64)


def from_user_data(data) -> tuple[np.ndarray, np.ndarray]:
  """(images, labels) from what a caller passes as training data:

    images                      uint8 array (N, H, W[, C])
    (images, labels)            a tuple of arrays
    {'image': ..., 'label': ...}
    tf.data.Dataset             finite; elements are images, (image, label) or dicts with
                                'image' (and 'label'); read once into host memory
  """
  import tensorflow as tf
  if isinstance(data, tf.data.Dataset):
    if int(data.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
      raise DataError("the tf.data.Dataset is endless (repeat()?); pass the finite dataset: the loop "
                      "shuffles and repeats it itself, as a pure function of (seed, step)")
    images, labels = [], []
    for element in data.as_numpy_iterator():
      if isinstance(element, dict):
        if "image" not in element:
          raise DataError(f"tf.data.Dataset elements are dicts without 'image' (keys {sorted(element)})")
        images.append(element["image"])
        labels.append(element.get("label", 0))
      elif isinstance(element, tuple):
        images.append(element[0])
        labels.append(element[1] if len(element) > 1 else 0)
      else:
        images.append(element)
        labels.append(0)
    if not images:
      raise DataError("the tf.data.Dataset is empty")
    return check_images(np.stack(images), np.asarray(labels), "tf.data.Dataset images")
  if isinstance(data, dict):
    if "image" not in data:
      raise DataError(f"a data dict needs 'image' (and optionally 'label'); got keys {sorted(data)}")
    return check_images(data["image"], data.get("label"), "data['image']")
  if isinstance(data, tuple):
    if len(data) != 2:
      raise DataError(f"data as a tuple is (images, labels); got {len(data)} items")
    return check_images(data[0], data[1], "data images")
  return check_images(data, None, "data")
