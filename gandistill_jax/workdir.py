"""What a workdir holds, read back without its trainer: the run's config (migrated once to
the current layout), its data record, the networks its checkpoints keep, the teacher a
distillation reads from it, and the lock of the run training in it.

    config.json   the run's config, as written by the loop
    data.json     the data the run actually read: the resolved source, where from, and the
                  digest (data.arrays.digest) of the training split as read
    data.npz      a run trained on the caller's arrays (loop.train(data=...)): those arrays,
                  the data its evaluation scores against unless told otherwise

data.json and data.npz are written through a temporary file in the same folder and a
rename (files.write_atomic), so a reader sees the old file or the whole new one.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gandistill_jax import checkpoint, config as config_lib, models, parallel, steps
from gandistill_jax.files import write_atomic

DATA_RECORD = "data.json"
DATA_ARRAYS = "data.npz"


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


def abstract_state(task, mesh) -> Any:
  """Shapes, dtypes and (replicated) shardings of the task's state, without computing it."""
  rep = parallel.replicated(mesh)
  shapes = jax.eval_shape(task.init, jax.random.key(0))
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), shapes)


def restore_latest(task, workdir: str, mesh, quarantine: bool = False) -> tuple[Any, jax.Array, int]:
  """(state, step key, step) of the workdir's newest intact checkpoint, placed on `mesh`.

  Newer steps that are corrupt are skipped with one line on stderr each; with
  `quarantine` (a run about to train on) they are moved to workdir/corrupt_checkpoints/
  so that the run can save those steps again."""
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"{workdir} has no checkpoint yet")
  ckpt = checkpoint.Checkpointer(directory, read_only=not quarantine)
  try:
    if ckpt.latest_step() is None:
      raise FileNotFoundError(f"{workdir} has no checkpoint yet")
    target = {"state": abstract_state(task, mesh),
              "rng": jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=parallel.replicated(mesh))}
    restored, _, step, problems = ckpt.restore_newest_intact(target)
    newer = [s for s in ckpt.all_steps() if s > step]
  finally:
    ckpt.close()
  for problem in problems:
    print(f"gandistill: {problem}; using step {step}", file=sys.stderr, flush=True)
  if quarantine and parallel.is_primary():
    for s in newer:
      os.makedirs(os.path.join(workdir, "corrupt_checkpoints"), exist_ok=True)
      target = os.path.join(workdir, "corrupt_checkpoints", str(s))
      if os.path.exists(target):   # the same step went bad before
        target += f"-{time.strftime('%Y%m%d-%H%M%S')}"
      os.replace(os.path.join(directory, str(s)), target)
  if quarantine:
    parallel.sync("quarantine")
  return restored["state"], jax.random.wrap_key_data(restored["rng"]), step

def network_module(config: ml_collections.ConfigDict, item: str):
  """The flax module of a saved network item: the run's generator, its discriminator, or a
  distill run's teacher generator."""
  if item == "generator":
    return models.build_generator(config.model)
  if item == "discriminator":
    return models.build_discriminator(config.model)
  if item == "teacher":
    return models.build_generator(config.teacher_model)
  raise ValueError(f"unknown network item {item!r}; use one of {checkpoint.NETWORK_ITEMS}")


def restore_network(workdir: str, item: str, config: ml_collections.ConfigDict | None = None):
  """(module, variables as host arrays, config, step) of one network a workdir's newest
  intact checkpoint keeps: `generator` (the EMA weights with their recomputed batch
  statistics: what samples, scores, exports and teaches), `discriminator` (a GAN run's)
  or `teacher` (a distill run's frozen teacher). Builds that network only: no optimizer,
  no training step. Checkpoints written before the networks were kept as items are read
  through the run's trainer (_from_trainer), the one place that does so."""
  config = config or load_config(workdir)
  if item == "teacher" and "distill" not in config:
    raise ValueError(f"{workdir} is a {'teacher or scratch' if 'distill' not in config else 'distill'} run; "
                     f"only a distill run keeps a teacher")
  module = network_module(config, item)
  directory = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"{workdir} has no checkpoint yet")
  mesh = parallel.make_mesh()
  rep = parallel.replicated(mesh)
  example = (jnp.zeros((2, config.model.latent_dim if item != "teacher" else config.teacher_model.latent_dim))
             if item != "discriminator" else jnp.zeros((2,) + models.sample_shape(config.model)))
  shapes = jax.eval_shape(lambda: models.init_variables(module, jax.random.key(0), example))
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), shapes)
  ckpt = checkpoint.Checkpointer(directory, read_only=True)
  try:
    if ckpt.latest_step() is None:
      raise FileNotFoundError(f"{workdir} has no checkpoint yet")
    try:
      variables, _, step, problems = ckpt.restore_newest_intact(target, item)
    except checkpoint.MissingItem:
      variables = None
  finally:
    ckpt.close()
  if variables is None:
    variables, step = _from_trainer(workdir, config, item, mesh)
    return module, variables, config, step
  for problem in problems:
    print(f"gandistill: {problem}; using step {step}", file=sys.stderr, flush=True)
  return module, parallel.to_host(variables), config, step


def _from_trainer(workdir: str, config, item: str, mesh):
  """A network of a checkpoint older than the network items: the run's whole task is built
  and its state restored, and the network taken from it as the run would have saved it."""
  from gandistill_jax import distill, tasks   # the trainers: only for old checkpoints
  task = distill.distill_task(config) if "distill" in config else tasks.gan_task(config)
  state, _, step = restore_latest(task, workdir, mesh)
  return parallel.to_host(jax.jit(lambda s: task.saved_networks(s)[item])(state)), step


def load_teacher(teacher_dir: str, config: ml_collections.ConfigDict):
  """(teacher model config, {'g': EMA variables with their own batch stats, 'd': D variables})
  from a teacher (or scratch) workdir, checked against `config`'s data and latent spec."""
  if not os.path.isdir(teacher_dir):
    raise FileNotFoundError(f"--teacher {teacher_dir}: no such workdir")
  t_config = load_config(teacher_dir)
  if "distill" in t_config:
    raise ValueError(f"--teacher {teacher_dir} is a distill run; give a teacher workdir")
  for key in ("image_size", "channels", "latent_dim"):
    if t_config.model[key] != config.model[key]:
      raise ValueError(f"--teacher {teacher_dir} has model.{key}={t_config.model[key]!r} but this config "
                       f"has {config.model[key]!r}; they must match")
  try:
    _, g_vars, _, step = restore_network(teacher_dir, "generator", t_config)
    _, d_vars, _, _ = restore_network(teacher_dir, "discriminator", t_config)
  except FileNotFoundError:
    raise FileNotFoundError(f"--teacher {teacher_dir} has no checkpoint yet; train it first") from None
  share = steps.ema_init_share(step, t_config.train.ema_decay, t_config.train.ema_warmup)
  if share > 0.1:
    print(f"gandistill: warning: the teacher's EMA generator ({teacher_dir}) still holds {share:.0%} of its "
          f"initial weights after {step} steps (train.ema_decay={t_config.train.ema_decay}, no "
          f"warm-up); train it longer or with train.ema_warmup=True", file=sys.stderr, flush=True)
  return t_config.model, {"g": g_vars, "d": d_vars}


class WorkdirBusy(RuntimeError):
  """Another process is training in this workdir."""


@contextlib.contextmanager
def workdir_lock(workdir: str):
  """An exclusive lock on workdir/.lock for the duration of a run (taken by the primary
  process of a multi-process run). flock locks belong to the open file, so the OS releases
  them when the process exits in any way (even kill -9): a lock is never stale."""
  if not parallel.is_primary():
    yield
    return
  path = os.path.join(workdir, ".lock")
  f = open(path, "a+")
  try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    f.seek(0)
    owner = f.read().strip() or "?"
    f.close()
    raise WorkdirBusy(f"another run (pid {owner}) is training in {workdir}; wait for it or use another "
                      f"--workdir") from None
  f.seek(0)
  f.truncate()
  f.write(str(os.getpid()))
  f.flush()
  try:
    yield
  finally:
    fcntl.flock(f, fcntl.LOCK_UN)
    f.close()
