"""First-step time of the Fashion-MNIST teacher run, cold (empty compilation cache) and
warm (the persistent cache that loop.train turns on, train.compile_cache), each in a
fresh process as a resumed or repeated run would be.

    python experiments/bench_compile.py [--runs 2]
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from machine import describe  # noqa: E402

RUN = """
import sys, numpy as np
sys.path.insert(0, {configs!r})
import fashion_mnist_teacher
from gandistill_jax import loop, tasks
c = fashion_mnist_teacher.get_config()
c.train.update(steps=2, log_every=1, sample_every=100, ckpt_every=100)
images = np.random.default_rng(0).integers(0, 256, (256, 28, 28), dtype=np.uint8)
loop.train(c, {workdir!r}, tasks.gan_task(c), progress=True, data=images)
"""


def first_step_seconds(cache: str, workdir: str) -> float:
  code = RUN.format(configs=os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs"), workdir=workdir)
  env = dict(os.environ, GANDISTILL_CACHE=cache, TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0")
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stderr
  return float(re.search(r"first step \(compile or compilation-cache load\): ([\d.]+) s", out).group(1))


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--runs", type=int, default=2, help="cold/warm pairs")
  a = ap.parse_args()
  print(describe())
  for i in range(a.runs):
    with tempfile.TemporaryDirectory() as tmp:
      cold = first_step_seconds(os.path.join(tmp, "cache"), os.path.join(tmp, "w1"))
      warm = first_step_seconds(os.path.join(tmp, "cache"), os.path.join(tmp, "w2"))
    print(f"pair {i + 1}: teacher first step cold {cold:.2f} s, warm {warm:.2f} s ({cold / warm:.1f}x)")


if __name__ == "__main__":
  main()
