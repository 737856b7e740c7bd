"""An image-folder source: the images below a folder, read as torchvision's ImageFolder does.

Layouts (class folders give labels 0..K-1 in sorted order; without them every label is 0):

    root/*.png                         one set
    root/<class>/**/*.png              one set with classes
    root/<split>/[<class>/]**/*.png    the splits as folders, when both data.split and
                                       data.eval_split name a folder (e.g. train/ and test/)

A folder without split folders is one set, of which the fraction `data.eval_fraction` is
held out as the eval split (data.eval_split) and the rest is the training split: an image
is held out when the SHA-256 of its path relative to the root, read as a number in [0, 1),
is below the fraction. So the split is deterministic, disjoint, the same on every machine,
and an image keeps its side when other images are added or removed. (The held-out share
is the fraction up to sampling noise, about sqrt(f (1 - f) / n).)

Decoding (Pillow): PNG, JPEG, WebP, BMP, GIF (first frame) and TIFF, in any mode.

- 16-bit grey (I;16, I) is scaled to 8 bits: round(v / 257).
- Palette, grey, CMYK and YCbCr images become RGB by Pillow's conversion.
- Alpha (RGBA, LA, PA, or a palette's or tRNS transparency) is composited on
  `data.background` (a colour name or #rrggbb; default white):
  out = round((a fg + (255 - a) bg) / 255).
- For a one-channel model the composited RGB becomes luma by ITU-R 601-2, Pillow's "L":
  L = (19595 R + 38470 G + 7471 B + 2^15) >> 16 (grey images keep their values exactly).

Each image is then centre-cropped to a square and resized to the model's size by
data.resize.resize_images with `data.resize_filter`. A file that cannot be decoded stops
the read with one line naming it, or, with `data.skip_unreadable=True`, is skipped and
counted.

The prepared arrays are cached, keyed by the digest of the folder's files (every image
file's relative path and SHA-256) and every setting above, in
<$GANDISTILL_CACHE or ~/.cache/gandistill_jax>/folder_sources/: changed files are read
again, never served from an older build. The source folder is only read.
"""
from __future__ import annotations

import hashlib
import os
import sys

import numpy as np

from gandistill_jax import files
from gandistill_jax.data import resize
from gandistill_jax.data.errors import DataError

EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def _is_image(name: str) -> bool:
  return name.lower().endswith(EXTENSIONS) and not name.startswith(".")


def _files_below(folder: str) -> list[str]:
  """Image files anywhere below `folder`, relative to it, in a fixed (sorted) order."""
  out = []
  for path, dirs, names in os.walk(folder):
    dirs.sort()
    rel = os.path.relpath(path, folder)
    out += [os.path.normpath(os.path.join(rel, n)) for n in sorted(names) if _is_image(n)]
  return out


def split_folders(root: str, split: str, eval_split: str) -> bool:
  """Whether `root` holds its splits as folders (<root>/<split> and <root>/<eval_split>)."""
  return all(os.path.isdir(os.path.join(root, s)) for s in (split, eval_split))


def list_images(folder: str) -> tuple[list[str], list[int], list[str]]:
  """(paths relative to `folder`, labels, class names) of the images below it."""
  if not os.path.isdir(folder):
    raise DataError(f"image folder {folder} does not exist")
  entries = sorted(os.listdir(folder))
  classes = [d for d in entries if os.path.isdir(os.path.join(folder, d)) and not d.startswith(".")]
  top = [n for n in entries if _is_image(n) and os.path.isfile(os.path.join(folder, n))]
  if classes and top:
    raise DataError(f"image folder {folder} holds both images ({top[0]}, ...) and class folders ({classes[0]}, ...); "
                    f"put every image in a class folder, or remove the class folders")
  if not classes:
    paths = _files_below(folder)
    labels = [0] * len(paths)
  else:
    paths, labels = [], []
    for k, c in enumerate(classes):
      files = [os.path.join(c, f) for f in _files_below(os.path.join(folder, c))]
      paths += files
      labels += [k] * len(files)
  if not paths:
    raise DataError(f"image folder {folder} holds no {'/'.join(EXTENSIONS)} files")
  return paths, labels, classes


def held_out(relpath: str, fraction: float) -> bool:
  """Whether an image is in the held-out split: SHA-256 of its relative path in [0, 1) < fraction."""
  h = hashlib.sha256(relpath.replace(os.sep, "/").encode()).digest()
  return int.from_bytes(h[:8], "big") / 2.0 ** 64 < fraction


def files_digest(root: str) -> tuple[int, str]:
  """(number of image files, SHA-256 over their relative paths and contents) below `root`."""
  if not os.path.isdir(root):
    raise DataError(f"image folder {root} does not exist")
  files = _files_below(root)
  h = hashlib.sha256(b"gandistill-folder-v1")
  for rel in files:
    with open(os.path.join(root, rel), "rb") as f:
      h.update(rel.replace(os.sep, "/").encode() + b"\0" + hashlib.sha256(f.read()).digest())
  return len(files), h.hexdigest()


def background_rgb(colour: str) -> tuple[int, int, int]:
  from PIL import ImageColor
  try:
    return ImageColor.getrgb(colour)[:3]
  except ValueError:
    raise DataError(f"data.background={colour!r} is not a colour; use a name (white, black) or #rrggbb") from None


def decode(path: str, channels: int, background: tuple[int, int, int]) -> np.ndarray:
  """One image file as uint8 (H, W, channels) by the rules in the module docstring."""
  from PIL import Image, UnidentifiedImageError
  try:
    with Image.open(path) as im:
      im.load()
      if im.mode in SIXTEEN_BIT_MODES:
        im = Image.fromarray(np.clip(np.round(np.asarray(im, np.float64) / 257.0), 0, 255).astype(np.uint8), "L")
      elif im.mode == "F":
        raise DataError(f"{path}: floating-point (mode F) images are not supported; save it as 8- or 16-bit")
      alpha = im.mode in ALPHA_MODES or "transparency" in im.info
      rgb = np.asarray(im.convert("RGBA" if alpha else "RGB"))
  except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
    raise DataError(f"{path}: not a readable image ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
  if alpha:
    a = rgb[..., 3:].astype(np.int64)
    rgb = ((a * rgb[..., :3] + (255 - a) * np.asarray(background, np.int64) + 127) // 255).astype(np.uint8)
  if channels == 1:
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    return ((19595 * r + 38470 * g + 7471 * b + (1 << 15)) >> 16).astype(np.uint8)[..., None]
  return rgb


def _read(root: str, paths: list[str], image_size: int, channels: int, background, resize_filter: str,
          skip_unreadable: bool) -> tuple[np.ndarray, list[int], list[str]]:
  """(images, kept indices, skipped paths) of `paths`, decoded, cropped and resized."""
  from tqdm import tqdm
  images, kept, skipped = [], [], []
  for i, rel in enumerate(tqdm(paths, desc=f"reading {root}", unit="img", disable=None, file=sys.stderr,
                               leave=False)):
    try:
      img = decode(os.path.join(root, rel), channels, background)
    except DataError:
      if not skip_unreadable:
        raise
      skipped.append(rel)
      continue
    images.append(resize.resize_images(img[None], image_size, resize_filter)[0])
    kept.append(i)
  if not images:
    raise DataError(f"image folder {root}: none of its {len(paths)} images could be read")
  return np.stack(images), kept, skipped


def split_paths(cfg, split: str) -> tuple[str, list[str], list[int]]:
  """(folder, relative paths, labels) of `split` of the folder source `cfg`."""
  root = os.path.expanduser(cfg.path)
  if split_folders(root, cfg.split, cfg.eval_split):
    if split not in (cfg.split, cfg.eval_split):
      raise DataError(f"image folder {root} has the splits {cfg.split!r} and {cfg.eval_split!r}, not {split!r}")
    _, _, classes = list_images(os.path.join(root, cfg.split))
    folder = os.path.join(root, split)
    paths, labels, these = list_images(folder)
    unknown = sorted(set(these) - set(classes))
    if unknown:
      raise DataError(f"{folder} has class folders {unknown} that {os.path.join(root, cfg.split)} lacks")
    return folder, paths, [classes.index(these[k]) for k in labels] if these else labels
  paths, labels, _ = list_images(root)
  if split == cfg.split:
    keep = [not held_out(p, cfg.eval_fraction) for p in paths]
  elif split == cfg.eval_split:
    if cfg.eval_fraction <= 0:
      raise DataError(f"image folder {root} has no {split!r} folder and data.eval_fraction is 0; hold out a "
                      f"share of it (--set data.eval_fraction=0.1) or give {os.path.join(root, split)}/")
    keep = [held_out(p, cfg.eval_fraction) for p in paths]
  else:
    raise DataError(f"image folder {root} has the splits {cfg.split!r} and {cfg.eval_split!r}, not {split!r}")
  chosen = [i for i, k in enumerate(keep) if k]
  if not chosen:
    raise DataError(f"image folder {root}: its {split!r} split (data.eval_fraction={cfg.eval_fraction}) is empty")
  return root, [paths[i] for i in chosen], [labels[i] for i in chosen]


def cache_folder() -> str:
  return os.path.join(os.path.expanduser(os.environ.get("GANDISTILL_CACHE", "") or "~/.cache/gandistill_jax"),
                      "folder_sources")


def load_split(cfg, split: str, image_size: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
  """`split` of the folder source `cfg` as (images uint8 (n, S, S, C), labels int64 (n,)),
  from the cache when the folder's files and every setting are the same."""
  if channels not in (1, 3):
    raise DataError(f"model.channels={channels}: an image folder is read as 1 (grey) or 3 (RGB) channels")
  resize.check_filter(cfg.resize_filter)
  background = background_rgb(cfg.background)
  root = os.path.expanduser(cfg.path)
  _, digest = files_digest(root)
  settings = dict(split=split, split_names=[cfg.split, cfg.eval_split], eval_fraction=cfg.eval_fraction,
                  image_size=image_size, channels=channels, background=list(background),
                  resize_filter=cfg.resize_filter, skip_unreadable=cfg.skip_unreadable, files=digest)
  key = hashlib.sha256(repr(sorted(settings.items())).encode()).hexdigest()
  path = os.path.join(cache_folder(), f"{key[:24]}.npz")
  if os.path.exists(path):
    try:
      with np.load(path, allow_pickle=False) as f:
        if str(f["key"]) == key:
          return f["images"], f["labels"]
    except (OSError, ValueError, KeyError):
      pass   # a damaged cache file is rebuilt
  folder, paths, labels = split_paths(cfg, split)
  images, kept, skipped = _read(folder, paths, image_size, channels, background, cfg.resize_filter,
                                cfg.skip_unreadable)
  if skipped:
    print(f"gandistill: warning: skipped {len(skipped)} of {len(paths)} images in {folder} that cannot be decoded "
          f"(data.skip_unreadable=True): {', '.join(skipped[:3])}{', ...' if len(skipped) > 3 else ''}",
          file=sys.stderr, flush=True)
  labels = np.asarray([labels[i] for i in kept], np.int64)
  os.makedirs(cache_folder(), exist_ok=True)
  files.write_atomic(path, lambda f: np.savez(f, images=images, labels=labels, key=np.array(key),
                                                    skipped=np.array(skipped, dtype=str)), mode="wb")
  return images, labels
