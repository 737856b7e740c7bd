"""The Orbax wrapper: async, atomic saves of the whole run; restores onto any mesh.

A checkpoint holds the train state (params, optimizer states, EMA, step), the run's
key, and a JSON item with the config and the data position. Orbax writes each step
into a temporary folder and renames it when complete, so a kill in the middle of a
save leaves nothing that `latest_step` would pick up.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp


class Checkpointer:
  """Keeps the last `keep` checkpoints, plus the best one by `best_metric` (lower wins)."""

  def __init__(self, directory: str, keep: int = 3, best_metric: str = ""):
    policies = [pp.LatestN(keep)]
    if best_metric:
      policies.append(pp.BestN(get_metric_fn=lambda m: m[best_metric], reverse=True, n=1,
                               keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        enable_async_checkpointing=True, preservation_policy=pp.AnyPreservationPolicy(policies),
        cleanup_tmp_directories=True)
    self.best_metric = best_metric
    self.manager = ocp.CheckpointManager(os.path.abspath(directory), options=options,
                                         item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state: Any, meta: dict, metrics: dict | None = None) -> None:
    """Starts an async save; errors of an earlier save surface here or in `wait`."""
    metrics = {k: float(v) for k, v in (metrics or {}).items()} if self.best_metric else None
    if metrics is not None and self.best_metric not in metrics:
      metrics = None
    self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                   meta=ocp.args.JsonSave(meta)),
                      metrics=metrics, force=True)

  def restore(self, step: int, target: Any) -> tuple[Any, dict]:
    """Restores `step` into the structure, dtypes and shardings of `target` (an abstract
    or concrete pytree); give target shardings for the current mesh to restore onto a
    different number of devices than the run that saved."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                             meta=ocp.args.JsonRestore()))
    return out["state"], out["meta"]

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
