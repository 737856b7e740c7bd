"""Time per step inside the training loop against the bare jitted step, same config, one run.

    python experiments/bench/bench_loop_overhead.py [--steps 300]

The loop adds input prefetch, host->device transfer, progress bar, metrics and samples
(checkpoints are pushed past the end, as they are rare in real runs). Goal: < 5%.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from machine import describe, seconds_per_step  # noqa: E402

from gandistill_jax import config as config_lib, loop, parallel, tasks  # noqa: E402
from gandistill_jax.data import pipeline  # noqa: E402


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--steps", type=int, default=300)
  a = ap.parse_args()
  print(describe())
  print("command: python experiments/bench/bench_loop_overhead.py " + " ".join(sys.argv[1:]))
  c = config_lib.base_config()
  c.model.update(image_size=28, g_width=32, d_width=32)
  c.train.update(steps=a.steps, log_every=50, sample_every=10**9, ckpt_every=10**9)
  # sample_every/ckpt_every past the end: only the final step samples and saves
  task = tasks.gan_task(c)
  mesh = parallel.make_mesh()
  stream = pipeline.train_stream(c, task.global_batch)
  step = parallel.jit_step(task.step, mesh)
  state = parallel.replicate(task.init(jax.random.key(0)), mesh)
  batch = parallel.host_to_global(stream.batch(0), mesh)
  bare = seconds_per_step(step, state, batch, jax.random.key(1), a.steps)
  with tempfile.TemporaryDirectory() as w:
    loop.train(c, w, task, mesh=mesh, progress=False)
    with open(os.path.join(w, "metrics.jsonl")) as f:
      rates = [json.loads(line)["steps_per_s"] for line in f][1:]  # the first interval holds the compile
  in_loop = 1.0 / float(np.median(rates))
  print(f"bare step {bare * 1e3:.2f} ms | in loop {in_loop * 1e3:.2f} ms/step (median over {len(rates)} "
        f"logging intervals of {c.train.log_every} steps) | overhead {100 * (in_loop / bare - 1):.1f}%")

if __name__ == "__main__":
  main()
