"""Compile time of the Fashion-MNIST teacher's train step, cold (empty compilation cache)
and warm (the persistent cache that the gandistill commands turn on, train.compile_cache), each in a
fresh process as a resumed or repeated run would be. Each process times, in order: tracing
and lowering the jitted step, compiling it (or loading it from the cache), and its first
run; "compile" below is the first two together, the time before the step can start.

    python experiments/bench/bench_compile.py [--runs 2]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))
from machine import describe  # noqa: E402

RUN = """
import json, sys, time
import jax, numpy as np
sys.path.insert(0, {configs!r})
import fashion_mnist_teacher
from gandistill_jax import loop, parallel, tasks
c = fashion_mnist_teacher.get_config()
loop.enable_compilation_cache(c)
mesh = parallel.make_mesh(jax.devices()[:1])
task = tasks.gan_task(c)
state, key = parallel.replicate((task.init(jax.random.key(0)), jax.random.key(1)), mesh)
batch = parallel.host_to_global({{"image": np.zeros((c.train.batch_size, 28, 28, 1), np.float32),
                                  "label": np.zeros((c.train.batch_size,), np.int64)}}, mesh)   # the loop's batch
step = parallel.jit_step(task.step, mesh)
t0 = time.perf_counter(); lowered = step.lower(state, batch, key)
t1 = time.perf_counter(); compiled = lowered.compile()
t2 = time.perf_counter(); jax.block_until_ready(compiled(state, batch, key))
t3 = time.perf_counter()
print(json.dumps({{"trace_lower": t1 - t0, "compile": t2 - t1, "run": t3 - t2}}))
"""


def split_seconds(cache: str) -> dict:
  code = RUN.format(configs=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs"))
  env = dict(os.environ, GANDISTILL_CACHE=cache, TF_CPP_MIN_LOG_LEVEL="3", TF_ENABLE_ONEDNN_OPTS="0")
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--runs", type=int, default=2, help="cold/warm pairs")
  a = ap.parse_args()
  print(describe())
  print("| pair | cache | trace + lower s | compile or cache load s | compile total s | first run s |")
  print("|---|---|---|---|---|---|")
  for i in range(a.runs):
    with tempfile.TemporaryDirectory() as tmp:
      for label in ("cold", "warm"):
        t = split_seconds(os.path.join(tmp, "cache"))
        print(f"| {i + 1} | {label} | {t['trace_lower']:.2f} | {t['compile']:.2f} | "
              f"{t['trace_lower'] + t['compile']:.2f} | {t['run']:.2f} |", flush=True)


if __name__ == "__main__":
  main()
