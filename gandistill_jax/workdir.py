"""What a workdir holds, read back without its trainer: the run's config (migrated once to
the current layout), its data record, the networks its checkpoints keep, the teacher a
distillation reads from it, and the lock of the run training in it.

    config.json   the run's config, as written by the loop
    data.json     the data the run actually read: the resolved source, where from, and the
                  digest (data.arrays.digest) of the training split as read; `history`: the
                  records of data the run trained on before (a change allowed on resume)
    data.npz      a run trained on the caller's arrays (loop.train(data=...)): those arrays,
                  the data its evaluation scores against unless told otherwise

data.json and data.npz are written through a temporary file in the same folder and a
rename (files.write_atomic), so a reader sees the old file or the whole new one.

A workdir is data, not code: a config.json that names a model family by a dotted import
path ('package.module:Name') is refused unless the user trusts the workdir's code
(`--trust-workdir-code`, or GANDISTILL_TRUST_WORKDIR_CODE=1; models.workdir_code_trusted).
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

from gandistill_jax import checkpoint, config as config_lib, models, parallel, steps, teachers
from gandistill_jax.files import write_atomic

DATA_RECORD = "data.json"
DATA_ARRAYS = "data.npz"


class WrongKind(ValueError):
  """A workdir holding another kind of run than the command expects."""


class UntrustedCode(ValueError):
  """A workdir's config.json names code to import, and the user has not said to trust it."""


def read_json(path: str):
  """The JSON in `path`; ValueError naming the file if it is not JSON (a damaged file)."""
  try:
    with open(path, "rb") as f:
      return json.loads(f.read().decode("utf-8"))
  except (UnicodeDecodeError, ValueError) as e:
    raise ValueError(f"{path} is damaged: not a JSON file ({type(e).__name__}: {str(e)[:120]}); restore it "
                     f"from a copy, or use a new --workdir") from None


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's config in the current layout (config.migrate), checked: a damaged file or
  values of the wrong type are one ValueError naming the file, and a model family given
  by a dotted path is refused unless the user trusts the workdir's code (check_trusted)."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    if os.path.isfile(workdir):
      raise NotADirectoryError(f"{workdir} is a file, not a workdir")
    raise FileNotFoundError(f"{workdir} has no config.json; is it a gandistill workdir?")
  saved = read_json(path)
  try:
    if not isinstance(saved, dict) or not all(isinstance(saved.get(k), dict) for k in ("model", "train", "data")):
      raise ValueError("not a gandistill config (no model, train and data sections)")
    config = ml_collections.ConfigDict(config_lib.migrate(saved))
    config_lib.check_types(config)
  except (ValueError, TypeError, AttributeError, KeyError) as e:
    raise ValueError(f"{path}: {e}") from None
  check_trusted(config, path)
  return config


def check_trusted(config: ml_collections.ConfigDict, path: str) -> None:
  """Refuses a config read from `path` (a workdir's, not the user's own) that names a model
  family by a dotted import path, unless the user trusts workdir code or this process has
  already built that family from the user's own config."""
  names = [(f"{section}.{key}", config[section][key]) for section in ("model", "teacher_model") if section in config
           for key in ("family", "d_family") if key in config[section]]
  untrusted = [(key, name) for key, name in names if models.needs_trust(name)]
  if untrusted and not models.workdir_code_trusted():
    key, name = untrusted[0]
    raise UntrustedCode(f"{path} names {key}={name!r}: Python code that would be imported and run from wherever "
                        f"Python finds {name.partition(':')[0]!r} (the current folder, PYTHONPATH); only if you "
                        f"trust where this workdir came from, pass --trust-workdir-code (or set "
                        f"{models.TRUST_ENV}=1)")


KIND_NAMES = {"teacher": "teacher", "scratch": "scratch", "distill": "distill", "gan": "teacher or scratch"}
KIND_COMMANDS = {"teacher": "train-teacher", "scratch": "train-scratch", "distill": "distill"}


def run_kind(workdir: str) -> str | None:
  """The kind of run a workdir holds: 'distill', 'teacher' or 'scratch' (as its newest
  readable checkpoint records), 'gan' (a teacher or scratch run without a checkpoint), or
  None where it holds no run."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    return None
  saved = read_json(path)
  if not isinstance(saved, dict):
    return None
  if "distill" in saved:
    return "distill"
  return checkpoint.saved_kind(os.path.join(workdir, "checkpoints")) or "gan"


def check_kind(workdir: str, kind: str, flag: str = "--workdir") -> None:
  """Refuses (WrongKind) a workdir holding another kind of run than `kind` ('teacher',
  'scratch' or 'distill'), naming what it holds, so that no command reads its checkpoints
  as something they are not."""
  have = run_kind(workdir)
  if have is None or have == kind or (have == "gan" and kind != "distill"):
    return
  hint = f"`gandistill {KIND_COMMANDS[have]}` resumes it" if have in KIND_COMMANDS else \
      "train-teacher or train-scratch resumes it"
  raise WrongKind(f"{flag} {workdir} holds a {KIND_NAMES[have]} run, not a {KIND_NAMES[kind]} run ({hint}); "
                  f"use a new --workdir for this run")


def read_data_record(workdir: str) -> dict | None:
  """The workdir's data.json, or None (a toy run, or a run older than the record)."""
  path = os.path.join(workdir, DATA_RECORD)
  if not os.path.exists(path):
    return None
  record = read_json(path)
  if not isinstance(record, dict) or "source" not in record:
    raise ValueError(f"{path} is damaged: not a data record; restore it from a copy, or use a new --workdir")
  return record


def _data_name(record: dict) -> str:
  where = record.get("folder", record.get("path", record.get("name", "")))
  return f"{record.get('source', '?')} {where}".strip() + f", train_sha256 {str(record.get('train_sha256'))[:12]}..."


def data_change(previous: dict | None, record: dict) -> str:
  """'' if `record` describes the training data `previous` (a data.json) records, else
  'X then; Y now'. Records older than the training digest are not compared."""
  if not previous or "train_sha256" not in previous or previous["train_sha256"] == record.get("train_sha256"):
    return ""
  return f"{_data_name(previous)} then; {_data_name(record)} now"


def write_data_record(workdir: str, record: dict, images: np.ndarray | None = None,
                      labels: np.ndarray | None = None, step: int = 0) -> None:
  """data.json, and with `images` (the caller's own arrays) data.npz holding them. A record
  of other data than the current data.json's (a change the user allowed at `step`) moves
  the current one into the record's `history`."""
  if images is not None:
    write_atomic(os.path.join(workdir, DATA_ARRAYS), lambda f: np.savez_compressed(f, images=images, labels=labels),
                 mode="wb")
    record = dict(record, arrays=DATA_ARRAYS)
  previous = read_data_record(workdir)
  history = list(previous.get("history", [])) if previous else []
  if data_change(previous, record):
    history.append({k: v for k, v in previous.items() if k not in ("history", "arrays")} | {"replaced_at_step": step})
  if history:
    record = dict(record, history=history)
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
    raise WrongKind(f"{workdir} holds a {KIND_NAMES[run_kind(workdir) or 'gan']} run; only a distill run keeps a "
                    f"teacher (--which teacher)")
  if item == "teacher" and config.distill.teacher_kind != "workdir":
    raise WrongKind(f"{workdir} learned from {teachers.article(config.distill.teacher_kind)} teacher "
                    f"({config.distill.teacher_dir or 'a function'}), which its checkpoints do not keep")
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


def check_teacher(teacher_dir: str) -> None:
  """Refuses a --teacher that is no workdir or a distill run's (WrongKind); warns (one line)
  for a scratch run's, which can teach but is not what a teacher is."""
  if not os.path.isdir(teacher_dir):
    raise FileNotFoundError(f"--teacher {teacher_dir}: no such workdir")
  kind = run_kind(teacher_dir)
  if kind == "distill":
    raise WrongKind(f"--teacher {teacher_dir} holds a distill run (a student); give a teacher workdir")
  if kind == "scratch":
    print(f"gandistill: warning: --teacher {teacher_dir} holds a scratch run (a baseline trained from scratch), not "
          f"a teacher; using it as given", file=sys.stderr, flush=True)


def _generator_only(workdir: str) -> bool:
  """True for a workdir whose newest checkpoint keeps a generator but no discriminator (a
  converted generator, gandistill_jax.torch_convert)."""
  directory = os.path.join(workdir, "checkpoints")
  steps_ = sorted((int(d) for d in os.listdir(directory) if d.isdigit()), reverse=True) \
      if os.path.isdir(directory) else []
  items = set(os.listdir(os.path.join(directory, str(steps_[0])))) if steps_ else set()
  return "generator" in items and "discriminator" not in items


def load_teacher(teacher_dir: str, config: ml_collections.ConfigDict | None = None):
  """(teacher model config, {'g': EMA variables with their own batch stats, 'd': D variables,
  or None for a generator-only workdir}) from a teacher (or scratch) workdir, checked
  against `config`'s data and latent spec when given."""
  check_teacher(teacher_dir)
  t_config = load_config(teacher_dir)
  for key in ("image_size", "channels", "latent_dim"):
    if config is not None and t_config.model[key] != config.model[key]:
      raise ValueError(f"--teacher {teacher_dir} has model.{key}={t_config.model[key]!r} but this config "
                       f"has {config.model[key]!r}; they must match")
  try:
    _, g_vars, _, step = restore_network(teacher_dir, "generator", t_config)
    d_vars = None if _generator_only(teacher_dir) else restore_network(teacher_dir, "discriminator", t_config)[1]
  except FileNotFoundError:
    raise FileNotFoundError(f"--teacher {teacher_dir} has no checkpoint yet; train it first") from None
  share = steps.ema_init_share(step, t_config.train.ema_decay, t_config.train.ema_warmup)
  if share > 0.1 and "convert" not in t_config:   # converted weights (torch_convert) are what their trainer kept
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
