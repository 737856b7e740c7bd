"""What a workdir holds, read back without its trainer: the run's config (migrated once to
the current layout) and its data record.

    config.json   the run's config, as written by the loop
    data.json     the data the run actually read: the resolved source, where from, and the
                  digest (data.arrays.digest) of the training split as read
    data.npz      a run trained on the caller's arrays (loop.train(data=...)): those arrays,
                  the data its evaluation scores against unless told otherwise

Every file here is written through a temporary file in the same folder and a rename, so a
reader sees the old file or the whole new one.
"""
from __future__ import annotations

import json
import os

import ml_collections
import numpy as np

from gandistill_jax import config as config_lib

DATA_RECORD = "data.json"
DATA_ARRAYS = "data.npz"


def write_atomic(path: str, write, mode: str = "w") -> None:
  """write(f) into a temporary file beside `path` (per process), then renamed to `path`."""
  tmp = f"{path}.{os.getpid()}.tmp"
  try:
    with open(tmp, mode) as f:
      write(f)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's config in the current layout (config.migrate)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{workdir} has no config.json; is it a gandistill workdir?")
  with open(path) as f:
    return ml_collections.ConfigDict(config_lib.migrate(json.load(f)))


def read_data_record(workdir: str) -> dict | None:
  """The workdir's data.json, or None (a toy run, or a run older than the record)."""
  path = os.path.join(workdir, DATA_RECORD)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def write_data_record(workdir: str, record: dict, images: np.ndarray | None = None,
                      labels: np.ndarray | None = None) -> None:
  """data.json, and with `images` (the caller's own arrays) data.npz holding them."""
  if images is not None:
    write_atomic(os.path.join(workdir, DATA_ARRAYS), lambda f: np.savez_compressed(f, images=images, labels=labels),
                 mode="wb")
    record = dict(record, arrays=DATA_ARRAYS)
  write_atomic(os.path.join(workdir, DATA_RECORD), lambda f: json.dump(record, f, indent=2))


def read_data_arrays(workdir: str) -> tuple[np.ndarray, np.ndarray] | None:
  """(images, labels) a run trained on the caller's arrays kept in data.npz, or None."""
  path = os.path.join(workdir, DATA_ARRAYS)
  if not os.path.exists(path):
    return None
  with np.load(path, allow_pickle=False) as f:
    return f["images"], f["labels"]
