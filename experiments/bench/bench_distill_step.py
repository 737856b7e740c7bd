"""Steps/s of distill_step against teacher_step, one run (Fashion-MNIST shapes: 28x28x1, batch 64).

    python experiments/bench/bench_distill_step.py [--steps 30]

The teacher is DCGAN width 64; students are widths 16 and 4 (rank-16 projection) with
the pixel-only and the joint (pixel + adversarial, student-size D) objectives.
Teacher weights are random: speed does not depend on their values.
"""
from __future__ import annotations

import argparse
import os
import sys

import jax
import ml_collections
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from machine import describe, seconds_per_step  # noqa: E402

from gandistill_jax import config as config_lib, distill, parallel, tasks  # noqa: E402


def steps_per_s(task, n: int) -> float:
  mesh = parallel.make_mesh()
  state = parallel.replicate(task.init(jax.random.key(0)), mesh)
  step = parallel.jit_step(task.step, mesh)
  images = np.random.default_rng(0).uniform(-1, 1, (task.global_batch, 28, 28, 1)).astype(np.float32)
  batch, key = parallel.host_to_global({"image": images}, mesh), jax.random.key(1)
  return 1.0 / seconds_per_step(step, state, batch, key, n)


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--steps", type=int, default=30)
  a = ap.parse_args()
  print(describe())
  print("command: python experiments/bench/bench_distill_step.py " + " ".join(sys.argv[1:]))
  c = config_lib.base_config()
  c.model.update(image_size=28, g_width=64, d_width=64)
  teacher_rate = steps_per_s(tasks.gan_task(c), a.steps)
  print(f"teacher_step (width 64): {teacher_rate:.1f} steps/s")
  for width, rank in ((16, 0), (4, 16)):
    for name, adv in (("pixel", 0.0), ("joint", 0.05)):
      d = ml_collections.ConfigDict(c.to_dict())
      d.teacher_model = ml_collections.ConfigDict(c.model.to_dict())
      d.model.update(g_width=width, proj_rank=rank)
      d.distill = config_lib.default_distill_config()
      d.distill.adv_weight = adv
      rate = steps_per_s(distill.distill_task(d), a.steps)
      print(f"distill_step {name:5s} student width {width:2d}: {rate:.1f} steps/s = {rate / teacher_rate:.1f}x teacher_step")


if __name__ == "__main__":
  main()
