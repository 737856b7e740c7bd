"""The Orbax wrapper: async, atomic saves of the whole run; verified restores onto any mesh.

A checkpoint holds the train state (params, optimizer states, EMA, step), the run's
key, the networks a reader needs as items of their own (`generator`: the EMA weights with
their recomputed batch statistics; `discriminator`, or a distill run's frozen `teacher`),
and a JSON item with the config, the data position and a SHA-256 of every array.
Orbax writes each step into a temporary folder and renames it when complete, so a kill
in the middle of a save leaves nothing that `latest_step` would pick up. A restore
recomputes the checksums: flipped bytes, a truncated file or garbage metadata make a
step corrupt (CorruptCheckpoint, one line naming the step and the folder), and
`restore_newest_intact` falls back to the newest step that restores intact.
"""
from __future__ import annotations

import hashlib
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from gandistill_jax.parallel import to_host


class CorruptCheckpoint(ValueError):
  """A saved step that cannot be restored as it was written."""


class MissingItem(LookupError):
  """A checkpoint written before the item was saved (or by a run that has none)."""


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
    problems = []
    for step in reversed(self.all_steps()):
      try:
        restored, meta = self.restore(step, target, item)
        return restored, meta, step, problems
      except CorruptCheckpoint as e:
        problems.append(str(e))
    raise CorruptCheckpoint(f"no intact checkpoint in {self.directory}: " + "; ".join(problems))

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
