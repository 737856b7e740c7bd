"""Throughput of the jitted teacher step (DCGAN, 32x32x1, batch 64) against the machine's matmul rate.

    python experiments/bench/bench_train_step.py [--widths 64 16] [--batches 64] [--dtypes float32 bfloat16]
    python experiments/bench/bench_train_step.py --widths 64 --vs-torch [--rounds 3]
    python experiments/bench/bench_train_step.py --widths 64 --size 28 --reuse-fake --g-forms default phase --rounds 3
    python experiments/bench/bench_train_step.py --widths 64 --size 28 --vs-torch --d-chunks default 0 --rounds 4

Prints one table row per (compute dtype, G/D width, batch) on the default device: build +
compile time, steady-state images/s, TFLOP/s achieved (XLA's cost-analysis FLOPs of one
step / its time), and that as a share of the same device's matmul rate in the same dtype,
measured in this run before every round (a large square matmul: the practical peak).

`--vs-torch` also runs the PyTorch eager reference step (experiments/reference/
torch_dcgan_step.py; torch is a benchmark-only dependency) on the same architecture,
batch and 32x32x1 images, alternating ours and theirs `--rounds` times in one sitting, and
prints the ratio of median images/s. The reference's G update reuses the D update's fake
batch, so ours runs with `loss.reuse_fake=True` there (one G forward per step on both sides).

`--g-forms default phase` times the generator's default training forms for its UpConvs
(models.dcgan.default_upsample: im2col for the hidden layers, phase for the output layer)
against phase everywhere, alternately, `--rounds` times (the same math; `--size 28` is the
Fashion-MNIST teacher's shape). `--d-chunks default 0` likewise times the discriminator's
default convolution slices (models.dcgan.default_conv_chunk) against whole-batch convolutions
(0); an integer is that many samples per slice.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from machine import describe, seconds_per_step  # noqa: E402

from gandistill_jax import config as config_lib, models, parallel, state as state_lib, steps, tasks  # noqa: E402
from gandistill_jax.models import dcgan  # noqa: E402

TORCH_STEP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference", "torch_dcgan_step.py")


def matmul_gflops(dtype: str = "float32", reps: int = 10) -> float:
  n = 2048 if jax.default_backend() == "cpu" else 8192
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  f = jax.jit(lambda a: a @ a)
  f(a).block_until_ready()
  t = time.perf_counter()
  for _ in range(reps):
    f(a).block_until_ready()
  return 2 * n**3 * reps / (time.perf_counter() - t) / 1e9


def teacher_step(width: int, batch: int, reuse_fake: bool = False, dtype: str = "float32", size: int = 32,
                 g_forms: str = "default", d_chunk: str = "default"):
  """(compiled teacher step, state, batch, key) for DCGAN at `width`, size x size x 1, non-saturating
  loss; `g_forms`: "default" (the generator's own UpConv forms) or "phase" everywhere; `d_chunk`:
  "default" (the discriminator's own convolution slices) or samples per slice (0: whole batch)."""
  c = config_lib.base_config()
  c.model.update(image_size=size, channels=1, g_width=width, d_width=width)
  c.train.update(batch_size=batch, compute_dtype=dtype)
  c.loss.reuse_fake = reuse_fake
  gen, disc = models.build_generator(c.model), models.build_discriminator(c.model)
  if g_forms == "phase":
    gen = gen.clone(upsample=("phase",) * dcgan.default_num_up(size))
  if d_chunk != "default":
    disc = disc.clone(conv_chunk=int(d_chunk))
  g_tx, d_tx = state_lib.adam(c.optim.g_lr, c.optim), state_lib.adam(c.optim.d_lr, c.optim)
  mesh = parallel.make_mesh()
  state = parallel.replicate(tasks.init_gan_state(gen, disc, g_tx, d_tx, jax.random.key(0), c.model), mesh)
  step = parallel.jit_step(steps.make_teacher_step(gen, disc, g_tx, d_tx, c), mesh)
  images = np.random.default_rng(0).uniform(-1, 1, (batch, size, size, 1)).astype(np.float32)
  batch_arr = parallel.host_to_global({"image": images}, mesh)
  key = jax.random.key(1)
  return step.lower(state, batch_arr, key).compile(), state, batch_arr, key


def bench_width(width: int, batch: int, n_steps: int, reuse_fake: bool = False, dtype: str = "float32",
                size: int = 32, g_forms: str = "default", d_chunk: str = "default") -> dict:
  t = time.perf_counter()
  compiled, state, batch_arr, key = teacher_step(width, batch, reuse_fake, dtype, size, g_forms, d_chunk)
  compile_s = time.perf_counter() - t
  cost = compiled.cost_analysis()
  flops = (cost[0] if isinstance(cost, list) else cost)["flops"]
  g_params = models.param_count(state.g_params)
  dt = seconds_per_step(compiled, state, batch_arr, key, n_steps)
  return dict(width=width, g_params=g_params, compile_s=compile_s, images_per_s=batch / dt,
              step_ms=dt * 1e3, gflops=flops / dt / 1e9, step_gflop=flops / 1e9)


def torch_images_per_s(width: int, batch: int, n_steps: int, size: int) -> float:
  out = subprocess.run([sys.executable, TORCH_STEP, "--ngf", str(width), "--batch", str(batch), "--size", str(size),
                        "--steps", str(n_steps)], check=True, capture_output=True, text=True).stdout
  return json.loads(out.strip().splitlines()[-1])["images_per_s"]


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--widths", type=int, nargs="+", default=[64, 16])
  p.add_argument("--batches", type=int, nargs="+", default=[64])
  p.add_argument("--size", type=int, default=32, choices=[28, 32], help="image side (1 channel)")
  p.add_argument("--dtypes", nargs="+", default=["float32"], choices=["float32", "bfloat16"],
                 help="train.compute_dtype values to run")
  p.add_argument("--steps", type=int, default=30)
  p.add_argument("--reuse-fake", action="store_true", help="loss.reuse_fake=True (one G forward per step)")
  p.add_argument("--g-forms", nargs="+", default=["default"], choices=["default", "phase"],
                 help="the generator's UpConv forms: its default ones, or phase everywhere")
  p.add_argument("--d-chunks", nargs="+", default=["default"],
                 help="the discriminator's convolution slices: 'default', or samples per slice (0: whole batch)")
  p.add_argument("--vs-torch", action="store_true", help="alternate with the PyTorch eager reference step")
  p.add_argument("--rounds", type=int, default=3, help="alternations with --vs-torch or several variants")
  a = p.parse_args()
  print(describe())
  print("command: python experiments/bench/bench_train_step.py " + " ".join(sys.argv[1:]))
  reuse = a.reuse_fake or a.vs_torch
  variants = [(f, c) for f in a.g_forms for c in a.d_chunks]
  name = lambda v: f"G forms '{v[0]}', D slices '{v[1]}'"
  rounds = a.rounds if a.vs_torch or len(variants) > 1 else 1
  print(f"\nloss.reuse_fake={reuse}, {a.size}x{a.size}x1\n\n| compute dtype | G forms | D slices | width | batch | G params | "
        f"build+compile s | images/s | ms/step | GFLOP/step | TFLOP/s | % of matmul rate |\n"
        f"|---|---|---|---|---|---|---|---|---|---|---|---|")
  for dtype in a.dtypes:
    for w in a.widths:
      for batch in a.batches:
        ours, shares, theirs = {v: [] for v in variants}, {v: [] for v in variants}, []
        for i in range(rounds):
          peak = matmul_gflops(dtype)   # every round: the machine's rate drifts
          print(f"| matmul rate, {dtype} | | | | | | | | | | {peak / 1e3:.3f} | 100% |", flush=True)
          for v in variants[::-1] if i % 2 else variants:   # alternate the order: the first runs faster
            r = bench_width(w, batch, a.steps, reuse, dtype, a.size, *v)
            ours[v].append(r["images_per_s"])
            shares[v].append(100 * r["gflops"] / peak)
            print(f"| {dtype} | {v[0]} | {v[1]} | {w} | {batch} | {r['g_params']:,} | {r['compile_s']:.1f} | "
                  f"{r['images_per_s']:.0f} | {r['step_ms']:.1f} | {r['step_gflop']:.2f} | {r['gflops'] / 1e3:.3f} | "
                  f"{shares[v][-1]:.0f}% |", flush=True)
          if a.vs_torch:
            theirs.append(torch_images_per_s(w, batch, a.steps, a.size))
            print(f"| PyTorch eager reference | | | {w} | {batch} | | | {theirs[-1]:.0f} | | | | |", flush=True)
        if rounds > 1:
          first = np.median(ours[variants[0]])
          for var, v in ours.items():
            vs = [f"{np.median(v) / first:.2f}x {name(variants[0])}"] if var != variants[0] else []
            vs += [f"{np.median(v) / np.median(theirs):.2f}x PyTorch's {np.median(theirs):.0f}"] if a.vs_torch else []
            print(f"\nwidth {w}, batch {batch}, {name(var)}: {np.median(v):.0f} images/s, "
                  f"{np.median(shares[var]):.0f}% of the matmul rate (medians of {rounds})" + (" = " + ", ".join(vs) if vs else ""))


if __name__ == "__main__":
  main()
