"""MNIST-format idx files (LeCun et al.; also Fashion-MNIST, Xiao et al. 2017, and KMNIST).

An idx file is: two zero bytes, a type code (0x08 = uint8), the number of dimensions n,
n big-endian uint32 sizes, then the payload in C order. Files may be gzipped.
"""
from __future__ import annotations

import gzip
import os

import numpy as np

from gandistill_jax.data.errors import DataError

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
SPLIT_PREFIXES = {"train": "train", "test": "t10k"}
KNOWN_FOLDERS = {"fashion_mnist": DEBIAN_FASHION_MNIST}


def read_idx(path: str) -> np.ndarray:
  """Reads a (possibly gzipped) uint8 idx file into an array, validating header and size."""
  try:
    with open(path, "rb") as f:
      raw = f.read()
    if raw[:2] == b"\x1f\x8b":
      raw = gzip.decompress(raw)
  except (OSError, EOFError, gzip.BadGzipFile) as e:
    raise DataError(f"{path}: cannot read ({e})") from None
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or not 1 <= raw[3] <= 4:
    raise DataError(f"{path}: not a uint8 idx file (magic bytes {raw[:4].hex() or 'missing'}, "
                    f"expected 0000080n with n in 1..4)")
  ndim = raw[3]
  if len(raw) < 4 + 4 * ndim:
    raise DataError(f"{path}: truncated idx header")
  shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", ndim, 4))
  offset, expected = 4 + 4 * ndim, int(np.prod(shape))
  if len(raw) - offset != expected:
    raise DataError(f"{path}: payload has {len(raw) - offset} bytes, the header {shape} "
                    f"needs {expected} (truncated or corrupt file)")
  return np.frombuffer(raw, np.uint8, expected, offset).reshape(shape)


def find_split_files(folder: str, split: str) -> tuple[str, str]:
  """(images, labels) paths for `split` in `folder`, .gz or not."""
  if split not in SPLIT_PREFIXES:
    raise DataError(f"split {split!r} is not in idx folders; use one of {sorted(SPLIT_PREFIXES)}")
  if not os.path.isdir(folder):
    raise DataError(f"idx folder {folder} does not exist; give data.path=<folder with "
                    f"*-images-idx3-ubyte[.gz] files>")
  found = []
  for kind, nd in (("images", 3), ("labels", 1)):
    stem = f"{SPLIT_PREFIXES[split]}-{kind}-idx{nd}-ubyte"
    paths = [os.path.join(folder, stem + ext) for ext in ("", ".gz")]
    path = next((p for p in paths if os.path.isfile(p)), None)
    if path is None:
      raise DataError(f"{folder}: no {stem}[.gz] for split {split!r}")
    found.append(path)
  return found[0], found[1]


def load_idx_split(folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """(images (N, H, W, 1) uint8, labels (N,) int64) of one split of an idx folder."""
  img_path, lbl_path = find_split_files(folder, split)
  images, labels = read_idx(img_path), read_idx(lbl_path)
  if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
    raise DataError(f"{img_path}: {images.shape} images do not match {labels.shape} labels in {lbl_path}")
  return images[..., None], labels.astype(np.int64)


def default_folder(name: str) -> str:
  """The folder where a known dataset's idx files are installed on this machine, or ''."""
  folder = KNOWN_FOLDERS.get(name, "")
  return folder if folder and os.path.isdir(folder) else ""
