"""The one training loop, for every kind of run (teacher, scratch, distill).

    mesh -> input stream -> state (restored or fresh) -> jitted step
         -> progress bar, metrics.jsonl + TensorBoard, sample grids, eval hook, checkpoints

Only this module (and the CLI) touch files, signals and the clock. A run killed at any
moment resumes from its latest checkpoint to the same parameters, bit for bit on CPU:
the step's randomness and the data are pure functions of (seed, step). SIGINT (Ctrl-C) and
SIGTERM (preemption) save at the current step and return the state before
config.train.steps (the command line then exits with its "stopped, resumable" code).

With several processes (parallel.initialize_distributed) every process runs this loop
on its rows of the global batch; keys, states and restores are global arrays on the
mesh, Orbax coordinates the checkpoints, and only the primary process writes config.json,
data.json, metrics.jsonl, TensorBoard events and sample grids.
"""
from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from typing import Any, Callable

import jax
import ml_collections
import tqdm

from gandistill_jax import config as config_lib, files, parallel, steps, workdir as workdir_lib
from gandistill_jax.checkpoint import Checkpointer
from gandistill_jax.images import save_samples
from gandistill_jax.tasks import Task

EvalFn = Callable[[Task, Any], dict]


class ConfigMismatch(ValueError):
  """The workdir holds a run whose config differs in something that changes the math."""


class TrainingDiverged(RuntimeError):
  """A loss became NaN or infinite; the last good checkpoint is kept."""


class DataChanged(ValueError):
  """A resumed run would read other data than the workdir's data.json records."""


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run_keys(seed: int) -> dict[str, jax.Array]:
  base = jax.random.key(seed)
  return {name: jax.random.fold_in(base, i) for i, name in enumerate(("init", "step", "samples"))}


def check_or_write_config(config: ml_collections.ConfigDict, workdir: str, write: bool = True) -> None:
  """Writes workdir/config.json (if `write`), or refuses a workdir whose saved config differs."""
  path = os.path.join(workdir, "config.json")
  current = json.loads(config.to_json())
  if os.path.exists(path):
    diffs = config_lib.math_differences(workdir_lib.read_json(path), current)
    if diffs:
      raise ConfigMismatch(f"{workdir} holds a run with a different config ({'; '.join(diffs)}); "
                           f"use a new --workdir or the saved config (e.g. --set key=saved value)")
  if not write:
    return
  os.makedirs(workdir, exist_ok=True)
  files.write_atomic(path, lambda f: json.dump(current, f, indent=2, sort_keys=True))


def _logged_step(line: str) -> float:
  """The step of a metrics.jsonl line; inf for a line a kill left half-written."""
  try:
    return json.loads(line)["step"]
  except (ValueError, KeyError, TypeError):
    return math.inf


class MetricsWriter:
  """metrics.jsonl (one JSON object per line) and TensorBoard events under workdir/tb."""

  def __init__(self, workdir: str, start: int = 0):
    """A run resumed at `start` drops the lines logged after that checkpoint (the steps it
    will log again), so every step appears once."""
    self.path = os.path.join(workdir, "metrics.jsonl")
    if os.path.exists(self.path):
      with open(self.path, errors="replace") as f:
        kept = [line for line in f if _logged_step(line) <= start]
      files.write_atomic(self.path, lambda f: f.writelines(kept))
    import tensorflow as tf   # here, not at the top: sample, export and eval restore without TensorFlow
    self.tf = tf
    self.tb = tf.summary.create_file_writer(os.path.join(workdir, "tb"))

  def write(self, step: int, metrics: dict) -> None:
    try:   # appended: a line cut by a kill is dropped on resume (_logged_step)
      with open(self.path, "a") as f:
        f.write(json.dumps({"step": step, **metrics}) + "\n")
    except OSError as e:
      raise OSError(e.errno, e.strerror, self.path) from None
    with self.tb.as_default(step=step):
      for k, v in metrics.items():
        if isinstance(v, (int, float)):
          self.tf.summary.scalar(k, v)
    self.tb.flush()


def train(config: ml_collections.ConfigDict, workdir: str, task: Task, eval_fn: EvalFn | None = None,
          mesh=None, progress: bool = True, data=None, allow_data_change: bool = False,
          should_stop: Callable[[], bool] | None = None) -> Any:
  """Runs (or resumes) `task` in `workdir` until config.train.steps; returns the final state
  (earlier when SIGINT or SIGTERM stopped it, or `should_stop()` returned True before a
  step, after saving the step reached).

  `data`: the caller's training images instead of config.data: a uint8 array (N, H, W[, C]),
  (images, labels), or a finite tf.data.Dataset (data.arrays.from_user_data). A resumed
  run must read the data its data.json records (the caller's arrays: the same arrays),
  unless `allow_data_change`; then data.json keeps the earlier records in its history."""
  config_lib.validate(config)                       # everything is checked before anything is written
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise NotADirectoryError(f"--workdir {workdir} is a file, not a folder")
  workdir_lib.check_kind(workdir, task.kind)
  mesh = mesh or parallel.make_mesh()
  parallel.check_batch_divisible(task.global_batch, mesh)
  check_shapes(task, mesh)
  from gandistill_jax.data import pipeline   # TensorFlow: only runs that train read data through tf.data
  stream = pipeline.train_stream(config, task.global_batch, data)   # data errors, too, come before any write
  record = data_record(config, data, stream)
  os.makedirs(workdir, exist_ok=True)
  with workdir_lib.workdir_lock(workdir):
    if record is not None:
      check_data(workdir, record, allow_data_change)
    check_or_write_config(config, workdir, write=parallel.is_primary())
    parallel.sync("config")
    return _train(config, workdir, task, eval_fn, mesh, progress and parallel.is_primary(), data, stream, record,
                  should_stop or (lambda: False))


def check_shapes(task: Task, mesh) -> None:
  """The state's shapes, computed without running anything: a config whose model cannot be
  built, or builds arrays of size zero, fails here rather than at its first checkpoint."""
  try:
    shapes = workdir_lib.abstract_state(task, mesh)
  except (ValueError, TypeError, ZeroDivisionError) as e:   # what Flax and JAX raise for impossible shapes
    first = (str(e).strip().splitlines() or [""])[0]
    raise ValueError(f"the model config cannot be built ({type(e).__name__}: {first[:200]})") from None
  leaves, _ = jax.tree_util.tree_flatten_with_path(shapes)
  for path, x in leaves:
    if x.size == 0:
      raise ValueError(f"the model config builds arrays of size zero ({jax.tree_util.keystr(path)}, shape "
                       f"{x.shape}); check the widths, latent_dim and image_size")


def data_record(config, data, stream) -> dict | None:
  """What data.json records of the data a run reads: the source and the digest of its
  training split as read (None for the toy distributions, which are not data)."""
  if config.data.source == "toy" and data is None:
    return None
  from gandistill_jax.data import arrays, pipeline
  real = getattr(stream, "real", stream)   # a PairedStream's real images
  return pipeline.describe_source(config.data, data) | {
      "train_sha256": arrays.digest(real.images, real.labels), "train_examples": len(real.images),
      "image_shape": list(real.images.shape[1:])}


def check_data(workdir: str, record: dict, allow_change: bool) -> None:
  """Refuses to resume a run on other data than its data.json records, unless allowed."""
  changed = workdir_lib.data_change(workdir_lib.read_data_record(workdir), record)
  if changed and not allow_change:
    raise DataChanged(f"{workdir} was trained on other data ({changed}); to train on the new data from here on, "
                      f"say so with --allow-data-change (loop.train(allow_data_change=True)): data.json then "
                      f"keeps the earlier record in its history; or use a new --workdir")


def enable_compilation_cache(config: ml_collections.ConfigDict) -> None:
  """XLA's persistent compilation cache in <cache dir>/xla (train.compile_cache), unless
  the caller configured one: a resumed or repeated run loads its compiled step instead of
  compiling it again (experiments/bench/bench_compile.py measures cold vs warm).

  It sets jax.config for the whole process, so the library never calls it on its own: the
  `gandistill` commands do (each is a process of its own), and a script opts in by calling
  it (or by setting jax_compilation_cache_dir itself)."""
  if config.train.compile_cache and not jax.config.jax_compilation_cache_dir:
    jax.config.update("jax_compilation_cache_dir", os.path.join(config_lib.cache_dir(config), "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _train(config, workdir: str, task: Task, eval_fn, mesh, progress: bool, data, stream, record, should_stop):
  tr = config.train
  keys = run_keys(config.seed)
  ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), tr.keep, tr.best_metric)
  start = ckpt.latest_step()
  if start is None:
    state, step_key = parallel.replicate((task.init(keys["init"]), keys["step"]), mesh)
    start = 0
  else:
    ckpt.close()
    state, step_key, start = workdir_lib.restore_latest(task, workdir, mesh, quarantine=True)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), tr.keep, tr.best_metric)
  primary = parallel.is_primary()
  if primary and record is not None:
    real = getattr(stream, "real", stream)
    workdir_lib.write_data_record(workdir, record, *((real.images, real.labels) if data is not None else ()),
                                  step=start)
    print(f"gandistill: data: {', '.join(f'{k}={v}' for k, v in record.items() if k != 'files')}",
          file=sys.stderr, flush=True)
  step_fn = parallel.jit_step(task.step, mesh)
  networks_fn = jax.jit(task.saved_networks)   # the sampling generator (and D or teacher), as checkpointed
  fixed_z = parallel.replicate(steps.sample_latent(keys["samples"], 64, task.latent_dim), mesh)
  sample_fn = jax.jit(lambda v, z: task.generator.apply(v, z))
  writer = MetricsWriter(workdir, start) if primary else None

  def save(step, networks, metrics=None):
    meta = {"step": step, "data_step": step, "kind": task.kind, "config": json.loads(config.to_json())}
    ckpt.save(step, {"state": state, "rng": jax.random.key_data(step_key)}, meta, metrics, networks=networks)

  stop = {"requested": False}
  previous = {sig: signal.signal(sig, lambda *_: stop.update(requested=True)) for sig in STOP_SIGNALS}
  batches = stream.iterate(start)
  bar = tqdm.tqdm(total=tr.steps, initial=start, disable=not progress, dynamic_ncols=True,
                  desc=f"{task.kind} {os.path.basename(os.path.normpath(workdir))}")
  # steps_per_s times training steps only: the clock restarts after the first step (which
  # compiles) and after every sample grid, eval and checkpoint.
  step, t_log, step_log = start, time.perf_counter(), start
  try:
    while step < tr.steps and not stop["requested"]:
      if should_stop():
        stop["requested"] = True
        break
      state, metrics = step_fn(state, parallel.host_to_global(next(batches), mesh), step_key)
      step += 1
      bar.update(1)
      if step == start + 1:
        jax.block_until_ready(metrics)
        if progress:
          tqdm.tqdm.write(f"first step (first batch, trace, compile or compilation-cache load, run): "
                          f"{time.perf_counter() - t_log:.1f} s",
                          file=sys.stderr)
        t_log, step_log = time.perf_counter(), step
      log_now = step % tr.log_every == 0 or step == tr.steps
      ckpt_now = step % tr.ckpt_every == 0 or step == tr.steps
      eval_now = bool(eval_fn) and tr.eval_every > 0 and (step % tr.eval_every == 0 or step == tr.steps)
      if not (log_now or ckpt_now or eval_now or step % tr.sample_every == 0):
        continue
      values = {k: float(v) for k, v in parallel.to_host(metrics).items()}
      if not all(math.isfinite(v) for v in values.values()):
        raise TrainingDiverged(f"non-finite loss at step {step} ({values}); the last good checkpoint "
                               f"(step {ckpt.latest_step()}) is kept in {workdir}/checkpoints")
      if log_now:
        now = time.perf_counter()
        if step > step_log:
          values["steps_per_s"] = (step - step_log) / max(now - t_log, 1e-9)
        t_log, step_log = now, step
        if writer:
          writer.write(step, values)
        bar.set_postfix({k: f"{v:.3g}" for k, v in values.items() if k in ("d_loss", "g_loss", "loss")})
      sample_now = step % tr.sample_every == 0 or step == tr.steps
      networks = networks_fn(state) if (sample_now or ckpt_now or eval_now) else None   # once for both
      if sample_now:
        samples = parallel.to_host(sample_fn(networks["generator"], fixed_z))   # every process computes
        if primary:
          os.makedirs(os.path.join(workdir, "samples"), exist_ok=True)
          files.write_atomic_path(os.path.join(workdir, "samples", f"step_{step:07d}.png"),
                                  lambda path: save_samples(samples, path), suffix=".png")
      eval_metrics = None
      if eval_now:
        eval_metrics = eval_fn(task, state)
        if writer:
          writer.write(step, {f"eval/{k}": v for k, v in eval_metrics.items() if isinstance(v, (int, float))})
      if ckpt_now or eval_now:
        save(step, networks, eval_metrics)
      t_log, step_log = time.perf_counter(), step
    if stop["requested"] and step > start and ckpt.latest_step() != step:
      save(step, networks_fn(state))
  finally:
    bar.close()
    ckpt.close()   # waits for the last save; a second signal meanwhile only sets the flag again
    for sig, handler in previous.items():
      signal.signal(sig, handler)
  return state
