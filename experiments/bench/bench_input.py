"""Input pipeline images/s into host memory (Fashion-MNIST, batch 64) beside the teacher step's.

    python experiments/bench/bench_input.py [--data-dir DIR] [--batches 3000]

The pipeline must be >= 10x faster than training so that it is never the bottleneck.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from bench_train_step import bench_width  # noqa: E402
from machine import describe  # noqa: E402

from gandistill_jax import config as config_lib  # noqa: E402
from gandistill_jax.data import pipeline  # noqa: E402


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--data-dir", default="")
  p.add_argument("--batches", type=int, default=3000)
  a = p.parse_args()
  print(describe())
  print("command: python experiments/bench/bench_input.py " + " ".join(sys.argv[1:]))
  c = config_lib.base_config()
  c.data.data_dir = a.data_dir
  t = time.perf_counter()
  stream = pipeline.train_stream(c, 64)
  print(f"load + decode + pad Fashion-MNIST train ({len(stream.images)} images): {time.perf_counter() - t:.1f}s")
  it = stream.iterate(0)
  next(it)
  t = time.perf_counter()
  for _ in range(a.batches):
    next(it)
  input_rate = a.batches * 64 / (time.perf_counter() - t)
  train_rate = bench_width(64, 64, 10)["images_per_s"]
  print(f"input pipeline: {input_rate:,.0f} images/s | teacher step (width 64, batch 64): "
        f"{train_rate:,.0f} images/s | ratio {input_rate / train_rate:,.0f}x (goal >= 10x)")


if __name__ == "__main__":
  main()
