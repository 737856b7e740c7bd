"""From a data config to an endless, deterministic, resumable stream of global batches.

Design. Every source (TFDS and local idx files through tf.data, image folders through
Pillow, npz files) is decoded and resized once (data/resize.py) into host memory as uint8
(N, H, W, C), the whole split in every process.
The global batch is then a pure function of (seed, step): epoch e visits the examples in
the order `default_rng([seed, 0, e]).permutation(n)`, step k takes the next B examples of
that endless sequence, and process p of P feeds rows [p B / P, (p + 1) B / P) of it. So a
run resumed at step k gets exactly the batches an uninterrupted run gets, with nothing
but k saved; the batches do not depend on how many processes share them; and the
shuffle is a true per-epoch one (no shuffle-buffer approximation). A thread prefetches
batches. (The 0 in the seed sequence keeps the stream of runs made before processes
shared one global batch.)

Images are scaled to [-1, 1]; labels are kept for the metrics.
"""
from __future__ import annotations

import functools
import os
import queue
import threading
from typing import Callable, Iterator

import jax
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from gandistill_jax import files
from gandistill_jax.data import arrays, folder as folder_lib, idx, local_idx, npz, resize, toy
from gandistill_jax.data.arrays import to_float
from gandistill_jax.data.errors import DataError

CENTER_CROPS = {"celeb_a": 140}  # the usual CelebA crop (178x218 -> 140x140) before resizing


def _hide_gpus_from_tf() -> None:
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # already initialised
    pass


def _tfds_arrays(builder: tfds.core.DatasetBuilder, split: str):
  if "image" not in builder.info.features:
    raise DataError(f"TFDS dataset {builder.info.name} has no 'image' feature")
  ds = builder.as_dataset(split=split, shuffle_files=False)
  has_label = "label" in builder.info.features
  ds = ds.map(lambda ex: (ex["image"], ex["label"] if has_label else tf.constant(0, tf.int64)),
              num_parallel_calls=tf.data.AUTOTUNE)
  images, labels = [], []
  for img, lbl in ds.batch(1024).as_numpy_iterator():
    images.append(img)
    labels.append(lbl.astype(np.int64))
  if not images:
    raise DataError(f"TFDS dataset {builder.info.name} split {split!r} is empty")
  return np.concatenate(images), np.concatenate(labels)


def _no_data_hint(name: str) -> str:
  if name in local_idx.NAMES:
    debian = " (Debian: apt-get install dataset-fashion-mnist)" if name == "fashion_mnist" else ""
    return f"use the local builder: --set data.source=idx data.path=<folder with the idx files>{debian}"
  return "prepare it where there is a network (data.download=True) and copy data_dir here"


def _tfds_builder(name: str, data_dir: str, download: bool) -> tfds.core.DatasetBuilder:
  """A prepared TFDS builder. Downloads only when asked: on an air-gapped machine TFDS
  retries for minutes before failing, so the default is to fail at once, with the fix."""
  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
  except tfds.core.registered.DatasetNotFoundError:
    raise DataError(f"dataset {name!r} is not a TFDS dataset; use a TFDS name, "
                    f"data.source=idx (mnist-format files) or data.source=folder") from None
  if not download:
    if not builder.is_prepared():
      raise DataError(f"TFDS dataset {name!r} is not prepared in {builder.data_dir}; "
                      f"{_no_data_hint(name)}, or allow downloads with --set data.download=True")
    return builder
  try:
    builder.download_and_prepare()
  except Exception as e:  # the download machinery raises many types; all mean "no data"
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise DataError(f"TFDS dataset {name!r} is not prepared in {builder.data_dir} and cannot be "
                    f"downloaded ({first[:120]}); {_no_data_hint(name)}") from None
  return builder


def resolve_source(cfg: ml_collections.ConfigDict) -> str:
  """'auto' means: local idx files when this machine has them for the name, else TFDS."""
  if cfg.source != "auto":
    return cfg.source
  return "idx" if cfg.name in local_idx.NAMES and (cfg.path or idx.default_folder(cfg.name)) else "tfds"


CALLER_DATA = "arrays"   # data.json's source for a run trained on the caller's own arrays


def describe_source(cfg: ml_collections.ConfigDict, user_data=None) -> dict:
  """What a run actually reads: the resolved source, where from, and for file sources the
  SHA-256 of the files (recorded in the workdir's data.json and logged)."""
  if user_data is not None:
    return {"source": CALLER_DATA, "type": type(user_data).__name__}
  source = resolve_source(cfg)
  out = {"source": source, "name": cfg.name, "split": cfg.split, "eval_split": cfg.eval_split}
  if source == "idx":
    folder, paths, digest = local_idx.source_files(cfg.name, cfg.path)
    out |= {"folder": os.path.abspath(os.path.expanduser(folder)), "files": [os.path.basename(f) for f in paths],
            "sha256": digest}
  elif source in ("folder", "npz"):
    out["path"] = os.path.abspath(os.path.expanduser(cfg.path))
    if source == "npz" and os.path.isfile(out["path"]):
      out["sha256"] = files.sha256(out["path"])
    if source == "folder" and os.path.isdir(out["path"]):
      out["num_files"], out["sha256"] = folder_lib.files_digest(out["path"])
      out |= {k: cfg[k] for k in ("eval_fraction", "background", "resize_filter")}
  elif source == "tfds":
    out["data_dir"] = cfg.data_dir or os.environ.get("TFDS_DATA_DIR", "") or "~/tensorflow_datasets"
  return out


def source_config(record: dict, data_cfg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`data_cfg` pointed at exactly the source a data record (describe_source) names, so a
  run is evaluated on the data it read even where 'auto' would resolve otherwise."""
  cfg = ml_collections.ConfigDict(data_cfg.to_dict())
  cfg.source = record["source"]
  for key in ("name", "split", "eval_split", "eval_fraction", "background", "resize_filter"):
    if key in record:
      cfg[key] = record[key]
  if "folder" in record or "path" in record:
    cfg.path = record.get("folder", record.get("path"))
  if record["source"] == "tfds":
    cfg.data_dir = record.get("data_dir", cfg.data_dir)
  return cfg


def source_changed(record: dict) -> str:
  """'' if the files a data record names still have its SHA-256, else what changed."""
  if "sha256" not in record:
    return ""
  if record["source"] == "idx":
    try:
      _, _, now = local_idx.source_files(record["name"], record["folder"])
    except DataError as e:
      return str(e)
  elif record["source"] == "npz":
    if not os.path.isfile(record["path"]):
      return f"{record['path']} is gone"
    now = files.sha256(record["path"])
  elif record["source"] == "folder":
    if not os.path.isdir(record["path"]):
      return f"{record['path']} is gone"
    _, now = folder_lib.files_digest(record["path"])
  else:
    return ""
  where = record.get("folder", record.get("path"))
  return "" if now == record["sha256"] else f"the data at {where} changed since the run read it (SHA-256 " \
      f"{record['sha256'][:12]}... then, {now[:12]}... now)"


def prepare_source(cfg: ml_collections.ConfigDict) -> None:
  """Prepares a TFDS or local idx source (once; a no-op when prepared), so that several
  processes about to read it do not all prepare it at once (TFDS refuses the second)."""
  source = resolve_source(cfg)
  if source == "tfds":
    _tfds_builder(cfg.name, cfg.data_dir, cfg.download)
  elif source == "idx":
    local_idx.local_idx_builder(cfg.name, cfg.path, cfg.data_dir)


def load_split(cfg: ml_collections.ConfigDict, split: str, image_size: int,
               channels: int) -> tuple[np.ndarray, np.ndarray]:
  """`split` as (images uint8 (n, S, S, C), labels int64 (n,))."""
  _hide_gpus_from_tf()
  source = resolve_source(cfg)
  if source == "tfds":
    images, labels = _tfds_arrays(_tfds_builder(cfg.name, cfg.data_dir, cfg.download), split)
  elif source == "idx":
    images, labels = _tfds_arrays(local_idx.local_idx_builder(cfg.name, cfg.path, cfg.data_dir), split)
  elif source == "folder":
    images, labels = folder_lib.load_split(cfg, split, image_size, channels)
  elif source == "npz":
    images, labels = npz.load_npz_split(cfg.path, split)
  else:
    raise DataError(f"data.source={source!r} is unknown; use auto, tfds, idx, folder or npz")
  return fit_images(images, cfg.name, image_size, channels, cfg.resize_filter), labels


def fit_images(images: np.ndarray, name: str, image_size: int, channels: int, resize_filter: str = "area") -> np.ndarray:
  """uint8 images brought to the model's channels (gray -> RGB by repetition) and size
  (resize.resize_images)."""
  if images.shape[-1] != channels:
    if images.shape[-1] == 1 and channels == 3:
      images = np.repeat(images, 3, axis=-1)
    else:
      raise DataError(f"dataset {name!r} has {images.shape[-1]} channels, the model wants "
                      f"{channels}; set model.channels={images.shape[-1]}")
  return resize.resize_images(images, image_size, resize_filter, CENTER_CROPS.get(name, 0))


def process_rows(global_batch: int, process_index: int | None = None, process_count: int | None = None) -> slice:
  """The rows of a global batch that process `process_index` of `process_count` feeds."""
  p = jax.process_index() if process_index is None else process_index
  local = local_batch_size(global_batch, process_count)
  return slice(p * local, (p + 1) * local)


class BatchStream:
  """Endless global batches of `images`; `batch(step)` is a pure function of (seed, step),
  of which this stream yields `rows` (this process's part; default: all). Iterate from any
  step with `iterate(start)`."""

  def __init__(self, images: np.ndarray, labels: np.ndarray, global_batch: int, seed: int,
               rows: slice | None = None):
    if len(images) < global_batch:
      raise DataError(f"{len(images)} examples cannot fill a batch of {global_batch}")
    self.images, self.labels = images, labels
    self.global_batch, self.seed, self.rows = global_batch, seed, rows or slice(0, global_batch)

  @functools.lru_cache(maxsize=2)
  def _order(self, epoch: int) -> np.ndarray:
    return np.random.default_rng([self.seed, 0, epoch]).permutation(len(self.images))

  def indices(self, step: int) -> np.ndarray:
    n, b = len(self.images), self.global_batch
    start = step * b
    epoch, offset = divmod(start, n)
    idx = self._order(epoch)[offset:offset + b]
    if len(idx) < b:
      idx = np.concatenate([idx, self._order(epoch + 1)[:b - len(idx)]])
    return idx[self.rows]

  def batch(self, step: int) -> dict:
    idx = self.indices(step)
    return {"image": to_float(self.images[idx]), "label": self.labels[idx]}

  def iterate(self, start: int = 0) -> Iterator[dict]:
    return prefetched(self.batch, start)


class ToyStream:
  """The ring of 8 Gaussians as a stream (data.source='toy'); batch(step) is pure."""

  def __init__(self, global_batch: int, seed: int, rows: slice | None = None):
    self.global_batch, self.seed, self.rows = global_batch, seed, rows or slice(0, global_batch)

  def batch(self, step: int) -> dict:
    return {"image": toy.ring_batch(self.seed * 1000003, step, self.global_batch)[self.rows]}

  def iterate(self, start: int = 0) -> Iterator[dict]:
    return prefetched(self.batch, start)


class PairedStream:
  """Real batches plus stored teacher pairs (offline distillation): batch(step) adds
  'z' and 'teacher' rows drawn, like the real ones, as a pure function of (seed, step)."""

  def __init__(self, real: BatchStream, z: np.ndarray, teacher: np.ndarray):
    if len(z) != len(teacher):
      raise DataError(f"offline set has {len(z)} z but {len(teacher)} teacher images")
    self.real = real
    self.pairs = BatchStream(teacher, np.arange(len(z)), real.global_batch, real.seed + 1, real.rows)
    self.z = z

  def batch(self, step: int) -> dict:
    idx = self.pairs.indices(step)
    return self.real.batch(step) | {"z": self.z[idx], "teacher": self.pairs.images[idx]}

  def iterate(self, start: int = 0) -> Iterator[dict]:
    return prefetched(self.batch, start)


def prefetched(batch_fn: Callable[[int], dict], start: int, depth: int = 4) -> Iterator[dict]:
  """batch_fn(start), batch_fn(start + 1), ..., computed ahead by a background thread."""
  q: queue.Queue = queue.Queue(maxsize=depth)
  stop = threading.Event()

  def work():
    step = start
    while not stop.is_set():
      item = batch_fn(step)
      while not stop.is_set():
        try:
          q.put(item, timeout=0.1)
          break
        except queue.Full:
          pass
      step += 1

  threading.Thread(target=work, daemon=True).start()
  try:
    while True:
      yield q.get()
  finally:
    stop.set()


def local_batch_size(global_batch: int, process_count: int | None = None) -> int:
  process_count = process_count or jax.process_count()
  if global_batch % process_count:
    raise DataError(f"global batch {global_batch} does not divide over {process_count} processes; "
                    f"use a train.batch_size that is a multiple of {process_count}")
  return global_batch // process_count


def train_stream(config: ml_collections.ConfigDict, global_batch: int, data=None):
  """This process's rows of the training stream for `config` (a full run config). `data`:
  the caller's own images instead of config.data (see arrays.from_user_data)."""
  rows = process_rows(global_batch)
  if data is not None:
    images, labels = arrays.from_user_data(data)
    images = fit_images(images, "user data", config.model.image_size, config.model.channels,
                        config.data.resize_filter)
  elif config.data.source == "toy":
    return ToyStream(global_batch, config.seed, rows)
  else:
    images, labels = load_split(config.data, config.data.split, config.model.image_size, config.model.channels)
  stream = BatchStream(images, labels, global_batch, config.seed, rows)
  if "distill" in config and config.distill.mode == "offline":
    from gandistill_jax import teachers
    return PairedStream(stream, *teachers.read_pairs(config.distill.offline_path))
  return stream
