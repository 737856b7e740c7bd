"""The Orbax wrapper: async, atomic saves of the whole run; verified restores onto any mesh.

A checkpoint holds the train state (params, optimizer states, EMA, step), the run's
key, the networks a reader needs as items of their own (`generator`: the EMA weights with
their recomputed batch statistics; `discriminator`, or a distill run's frozen `teacher`),
and a JSON item with the config, the data position and a SHA-256 of every array.
Orbax writes each step into a temporary folder and renames it when complete, so a kill
in the middle of a save leaves nothing that `latest_step` would pick up. A restore
recomputes the checksums: flipped bytes, a truncated file or garbage metadata make a
step corrupt (CorruptCheckpoint, one line naming the step and the folder), and
`restore_newest_intact` falls back to the newest step that restores intact. Networks of
other shapes than the restore asks for are not damage: CheckpointMismatch says so, and
nothing is moved aside for it.

A failed restore leaves Orbax's other reads in flight: at exit their TensorStore callbacks
find the event loop closed, their gathered futures are never retrieved and their
coroutines never awaited, and Python reports each (`RuntimeError: Event loop is closed`,
`_GatheringFuture exception was never retrieved`, ...) with a traceback. They are noise
after an error already reported in one line; `_quiet_orbax_leftovers` drops exactly those
(errors raised in Orbax's own code or by its closed loop), and every other error is
reported as before.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import traceback
import warnings
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from gandistill_jax.parallel import to_host


class CorruptCheckpoint(ValueError):
  """A saved step that cannot be restored as it was written."""


class CheckpointMismatch(ValueError):
  """A saved step holding other networks (structure or shapes) than the restore asks for:
  a config or command that does not fit the workdir, not a damaged checkpoint."""


class MissingItem(LookupError):
  """A checkpoint written before the item was saved (or by a run that has none)."""


# What Orbax and TensorStore say when the arrays asked for are not the arrays saved.
_MISMATCH = ("tree structures do not match", "is not compatible with the stored shape")


def _from_orbax(tb) -> bool:
  return any(f"{os.sep}orbax{os.sep}" in f.filename for f in traceback.extract_tb(tb)) if tb else False


def _leftover(e: BaseException | None, tb=None) -> bool:
  """An error a failed Orbax restore leaves behind: raised in Orbax's code, or its closed
  event loop refusing a TensorStore callback."""
  if e is None:
    return False
  tb = tb or e.__traceback__
  frames = traceback.extract_tb(tb) if tb else []
  closed_loop = (isinstance(e, RuntimeError) and str(e) == "Event loop is closed" and bool(frames)
                 and frames[-1].name == "_check_closed" and os.path.basename(frames[-1].filename) == "base_events.py")
  return closed_loop or _from_orbax(tb)


def _quiet_unraisable(previous):
  """sys.unraisablehook without Orbax's leftovers."""
  def hook(unraisable):
    coroutine = getattr(unraisable.object, "cr_code", None)
    if _leftover(unraisable.exc_value, unraisable.exc_traceback) or (
        coroutine is not None and f"{os.sep}orbax{os.sep}" in coroutine.co_filename):
      return
    previous(unraisable)
  hook.gandistill_quiet = True
  return hook


class _NoOrbaxLeftovers(logging.Filter):
  """asyncio's 'exception was never retrieved' for a future of Orbax's failed restore."""

  def filter(self, record):
    return not (record.exc_info and _leftover(record.exc_info[1], record.exc_info[2]))


def _quiet_orbax_leftovers() -> None:
  if not getattr(sys.unraisablehook, "gandistill_quiet", False):
    sys.unraisablehook = _quiet_unraisable(sys.unraisablehook)
  logger = logging.getLogger("asyncio")
  if not any(isinstance(f, _NoOrbaxLeftovers) for f in logger.filters):
    logger.addFilter(_NoOrbaxLeftovers())
  # a coroutine collected at exit, outside any Python frame (module 'sys'): the package runs none of its own
  warnings.filterwarnings("ignore", r"coroutine '.*' was never awaited", RuntimeWarning, "sys")


_quiet_orbax_leftovers()


def saved_kind(directory: str) -> str | None:
  """The run kind ('teacher', 'scratch', 'distill') the newest readable step in
  `directory` records, read from its JSON item without restoring anything; None if none."""
  if not os.path.isdir(directory):
    return None
  for step in sorted((int(d) for d in os.listdir(directory) if d.isdigit()), reverse=True):
    try:
      with open(os.path.join(directory, str(step), "meta", "metadata"), "rb") as f:
        kind = json.loads(f.read().decode("utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
      continue
    if isinstance(kind, str):
      return kind
  return None


NETWORK_ITEMS = ("generator", "discriminator", "teacher")


def checksums(tree: Any) -> dict[str, str]:
  """{path in the pytree: SHA-256 of the array's bytes} for every leaf."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {jax.tree_util.keystr(path): hashlib.sha256(np.ascontiguousarray(to_host(x)).tobytes()).hexdigest()
          for path, x in leaves}


class Checkpointer:
  """Keeps the last `keep` checkpoints, plus the best one by `best_metric` (lower wins)."""

  def __init__(self, directory: str, keep: int = 3, best_metric: str = "", read_only: bool = False):
    """`read_only`: for commands that only restore (eval, sample, export, teacher loading):
    they neither create the folder nor clean up a training run's in-flight temporary saves."""
    policies = [pp.LatestN(keep)]
    if best_metric:
      policies.append(pp.BestN(get_metric_fn=lambda m: m[best_metric], reverse=True, n=1,
                               keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        enable_async_checkpointing=True, preservation_policy=pp.AnyPreservationPolicy(policies),
        cleanup_tmp_directories=not read_only, read_only=read_only, create=not read_only)
    self.best_metric, self.directory = best_metric, directory
    self.manager = ocp.CheckpointManager(os.path.abspath(directory), options=options,
                                         item_names=("state", "meta") + NETWORK_ITEMS)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: Any, meta: dict, metrics: dict | None = None,
           networks: dict[str, Any] | None = None) -> None:
    """Starts an async save of `state` and the `networks` items (NETWORK_ITEMS); errors of
    an earlier save surface here or in `wait`."""
    metrics = {k: float(v) for k, v in (metrics or {}).items()} if self.best_metric else None
    if metrics is not None and self.best_metric not in metrics:
      metrics = None
    networks = networks or {}
    meta = meta | {"checksums": checksums(state), "item_checksums": {k: checksums(v) for k, v in networks.items()}}
    items = {k: ocp.args.StandardSave(v) for k, v in networks.items()}
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta),
                                                   **items),
                      metrics=metrics, force=True)

  def restore(self, step: int, target: Any, item: str = "state") -> tuple[Any, dict]:
    """Restores `item` of `step` into the structure, dtypes and shardings of `target` (an
    abstract or concrete pytree); give target shardings for the current mesh to restore
    onto a different number of devices than the run that saved. MissingItem if the step
    has no such item (written before it was saved)."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    where = f"checkpoint step {step} in {self.directory}"
    if item != "state" and not os.path.isdir(os.path.join(self.directory, str(step), item)):
      raise MissingItem(f"{where} has no {item!r} item")
    try:
      out = self.manager.restore(step, args=ocp.args.Composite(**{item: ocp.args.StandardRestore(abstract)},
                                                               meta=ocp.args.JsonRestore()))
    except Exception as e:  # Orbax, TensorStore and JSON raise many types; all mean "unreadable"
      first = (str(e).strip().splitlines() or [type(e).__name__])[0]
      if any(m in str(e) for m in _MISMATCH):
        raise CheckpointMismatch(f"{where} holds {item} networks of another structure or shape than this config "
                                 f"builds ({first[:160]})") from None
      raise CorruptCheckpoint(f"{where} is unreadable ({type(e).__name__}: {first[:200]})") from None
    meta = out["meta"] or {}
    saved = meta.get("checksums") if item == "state" else meta.get("item_checksums", {}).get(item)
    if saved is not None:   # checkpoints written before checksums existed are not verified
      bad = sorted(k for k, v in checksums(out[item]).items() if saved.get(k) != v)
      if bad:
        raise CorruptCheckpoint(f"{where} is corrupt: the data of {len(bad)} array(s) do not match their "
                                f"checksums (first: {item}{bad[0]})")
    return out[item], meta

  def restore_newest_intact(self, target: Any, item: str = "state") -> tuple[Any, dict, int, list[str]]:
    """(item, meta, step, problems) of the newest step whose `item` restores intact;
    `problems` says which newer steps were skipped and why. CorruptCheckpoint if none is
    intact; MissingItem if the newest readable step has no such item."""
    problems, mismatch = [], None
    for step in reversed(self.all_steps()):
      try:
        restored, meta = self.restore(step, target, item)
        return restored, meta, step, problems
      except CheckpointMismatch as e:   # damage only if an older step fits
        mismatch = mismatch or e
        problems.append(str(e))
      except CorruptCheckpoint as e:
        problems.append(str(e))
    if mismatch is not None:
      raise CheckpointMismatch(f"{mismatch}; the checkpoints are not damaged: the config or the command does not fit "
                               f"this workdir (check --workdir, --which and the run's config)")
    raise CorruptCheckpoint(f"no intact checkpoint in {self.directory}: " + "; ".join(problems))

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
