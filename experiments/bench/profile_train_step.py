"""Where the teacher step's time goes: a jax.profiler trace of the jitted step, and each layer alone.

    python experiments/bench/profile_train_step.py [--width 64] [--batch 64] [--reuse-fake] [--trace-dir DIR]

1. The whole step (DCGAN, 32x32x1, non-saturating, as bench_train_step.py) is traced with
   `jax.profiler` for `--steps` steps; the XLA:CPU ops in the trace are summed by kind
   (convolutions and matmuls, elementwise fusions, layout copies/transposes, other) and the
   most expensive ops are listed with their HLO shapes.
2. Each layer of G and D is timed alone at the step's batch, in the form it trains with
   (G's UpConv forms, D's batch slices): forward, and backward (the gradients for its input
   and its weights), with XLA's FLOPs of each, so a layer that runs far below the machine's
   matmul rate stands out.
The trace is kept in --trace-dir for TensorBoard/Perfetto.
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, os.path.dirname(__file__))
from bench_train_step import matmul_gflops, teacher_step  # noqa: E402
from machine import describe  # noqa: E402

from gandistill_jax.models import dcgan, layers  # noqa: E402
from gandistill_jax.eval import efficiency  # noqa: E402


def kind_of(hlo_line: str, name: str) -> str:
  if name.startswith(("ynn_fusion", "convolution", "conv_general", "dot", "custom-call")) or " convolution(" in hlo_line:
    return "convolution / matmul"
  if "transpose" in name or "copy" in name or "bitcast" in name:
    return "layout (transpose / copy)"
  if "fusion" in name:
    return "elementwise / reduction fusion"
  return "other"


def trace_ops(step, state, batch, key, n_steps: int, trace_dir: str) -> tuple[dict, float]:
  """{hlo op name: total microseconds over n_steps} from a profiler trace, and the wall time per step."""
  for _ in range(3):
    state, metrics = step(state, batch, key)
  jax.block_until_ready(state)
  jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
  t = time.perf_counter()
  for _ in range(n_steps):
    state, metrics = step(state, batch, key)
  jax.block_until_ready((state, metrics))
  wall = (time.perf_counter() - t) / n_steps
  jax.profiler.stop_trace()
  path = sorted(glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True))[-1]
  with gzip.open(path) as f:
    events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  ops = collections.Counter()
  for e in events:
    if e.get("ph") == "X" and e.get("args", {}).get("hlo_op") == e["name"]:
      ops[e["name"]] += e.get("dur", 0.0)
  return ops, wall


def layer_table(width: int, batch: int, repeats: int = 10) -> list[tuple]:
  """(layer, output shape, forward ms, backward ms, forward MFLOP, backward MFLOP) per layer of G and D."""
  chans = dcgan.stage_channels(width, 32)
  rng = np.random.default_rng(0)
  rows = []
  def conv_down(x, k):
    return lax.conv_general_dilated(x, k, (2, 2), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
  g_layers = [("G proj (dense)", lambda x, k: x @ k, (batch, 100), (100, 16 * chans[0]))]
  size, c_in = 4, chans[0]
  forms = dcgan.default_upsample(len(chans), train=True)   # the forms G trains with
  for i, (c, form) in enumerate(zip(chans[1:] + [1], forms)):
    g_layers.append((f"G UpConv_{i} ({c_in}->{c}, {form})", layers.UPSAMPLE_METHODS[form], (batch, size, size, c_in),
                     (4, 4, c_in, c)))
    size, c_in = 2 * size, c
  d_layers, size, c_in = [], 32, 1
  for i in range(len(chans)):
    c = width * 2**i
    chunk = dcgan.default_conv_chunk(c_in)   # D's training form: batch slices for wide layers
    sliced = lambda x, k, chunk=chunk: layers.batch_chunked(lambda h: conv_down(h, k), x, chunk, jax.device_count())
    d_layers.append((f"D Conv_{i} ({c_in}->{c}" + (f", slices of {chunk})" if chunk else ")"), sliced,
                     (batch, size, size, c_in), (4, 4, c_in, c)))
    size, c_in = size // 2, c
  d_layers.append(("D logits (dense)", lambda x, k: x @ k, (batch, size * size * c_in), (size * size * c_in, 1)))
  for name, f, x_shape, k_shape in g_layers + d_layers:
    x = jnp.asarray(rng.standard_normal(x_shape), jnp.float32)
    k = jnp.asarray(rng.standard_normal(k_shape) * 0.02, jnp.float32)
    fwd = jax.jit(f)
    y = fwd(x, k)
    dy = jnp.ones_like(y)
    bwd = jax.jit(lambda x, k, dy, f=f: jax.vjp(f, x, k)[1](dy))
    times = []
    for fn, args in ((fwd, (x, k)), (bwd, (x, k, dy))):
      jax.block_until_ready(fn(*args))
      ts = []
      for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        ts.append(time.perf_counter() - t)
      times.append((float(np.median(ts)), efficiency.compiled_flops(fn, *args)))
    (t_f, fl_f), (t_b, fl_b) = times
    rows.append((name, tuple(y.shape), t_f * 1e3, max(t_b - t_f, 0.0) * 1e3, fl_f / 1e6, max(fl_b - fl_f, 0.0) / 1e6,
                 t_b * 1e3))
  return rows


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--width", type=int, default=64)
  ap.add_argument("--batch", type=int, default=64)
  ap.add_argument("--steps", type=int, default=10)
  ap.add_argument("--reuse-fake", action="store_true")
  ap.add_argument("--trace-dir", default="", help="keep the trace here (default: a temporary folder)")
  ap.add_argument("--top", type=int, default=12)
  a = ap.parse_args()
  print(describe())
  print("command: python experiments/bench/profile_train_step.py " + " ".join(sys.argv[1:]))
  peak = matmul_gflops()
  print(f"fp32 matmul (2048^2, jit): {peak:.1f} GFLOP/s\n")
  compiled, state, batch, key = teacher_step(a.width, a.batch, a.reuse_fake)
  hlo = {}
  for line in compiled.as_text().splitlines():
    m = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = (\S+)", line)
    if m:
      hlo.setdefault(m.group(1), line)
  with tempfile.TemporaryDirectory() as tmp:
    ops, wall = trace_ops(compiled, state, batch, key, a.steps, a.trace_dir or tmp)
  total = sum(ops.values())
  by_kind = collections.Counter()
  for name, us in ops.items():
    by_kind[kind_of(hlo.get(name, ""), name)] += us
  print(f"whole step (width {a.width}, batch {a.batch}, reuse_fake={a.reuse_fake}): {wall * 1e3:.1f} ms wall; "
        f"XLA ops {total / a.steps / 1e3:.1f} ms per step\n")
  print("| op kind | ms / step | share |\n|---|---|---|")
  for kind, us in by_kind.most_common():
    print(f"| {kind} | {us / a.steps / 1e3:.2f} | {100 * us / total:.0f}% |")
  print(f"\nthe {a.top} most expensive ops (HLO names and shapes):\n\n| op | ms / step | share | HLO |\n|---|---|---|---|")
  for name, us in ops.most_common(a.top):
    line = re.sub(r", metadata=.*|, backend_config=.*", "", hlo.get(name, "").strip())[:140]
    print(f"| {name} | {us / a.steps / 1e3:.2f} | {100 * us / total:.0f}% | `{line}` |")
  print(f"\neach layer alone at batch {a.batch} (backward = gradients for input and weights):\n")
  print("| layer | output | fwd ms | bwd ms | fwd GFLOP/s | bwd GFLOP/s | bwd % of matmul rate |\n|---|---|---|---|---|---|---|")
  for name, shape, t_f, t_b, fl_f, fl_b, _ in layer_table(a.width, a.batch):
    g_f, g_b = fl_f / max(t_f, 1e-9), fl_b / max(t_b, 1e-9)   # MFLOP / ms = GFLOP/s
    print(f"| {name} | {shape} | {t_f:.2f} | {t_b:.2f} | {g_f:.0f} | {g_b:.0f} | {100 * g_b / peak:.0f}% |")


if __name__ == "__main__":
  main()
