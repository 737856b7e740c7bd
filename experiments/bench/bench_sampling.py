"""Sampling speed of teacher and students, from exported artifacts and the in-library apply.

    python experiments/bench/bench_sampling.py runs/teacher runs/distill_w16 runs/distill_w4

For each generator exported in its inference form (the default: batch norm folded,
upsampling chosen by timing) and exported as trained (`optimize=False`, the same math as
the library's apply), prints XLA's FLOPs per sample, latency at batch 1 (median of single
blocking calls) and throughput at batch 1/64/256 (medians of runs of back-to-back calls of
about 50 ms or more, as a sampling loop runs), each also as a ratio to the teacher's. The
time per batch is modelled as t(b) = t0 + b * c from the batch-1 and batch-256
throughputs: t0 is the fixed cost of a call (dispatch, per-op overhead), and "overhead %"
is t0 / t(256), the share of a batch-256 call that does not grow with the batch. The first
workdir is the teacher.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from machine import describe  # noqa: E402

from gandistill_jax import export  # noqa: E402
from gandistill_jax.eval import efficiency  # noqa: E402

BATCHES = (1, 64, 256)


def measure(generate, latent_dim: int, repeats: int) -> dict:
  """Latency: single blocking batch-1 calls. Throughput (and the overhead model): runs of
  back-to-back calls of about 50 ms or more at every batch size."""
  out, latency = {}, None
  for b in BATCHES:
    z = np.random.default_rng(0).standard_normal((b, latent_dim)).astype(np.float32)
    if b == 1:
      latency = float(np.median(efficiency.time_call(generate, z, repeats)))
    out[b] = float(np.median(efficiency.time_call(generate, z, max(5, repeats // 4),
                                                  min_seconds=efficiency.THROUGHPUT_SECONDS)))
  per_sample = (out[256] - out[1]) / 255
  fixed = max(out[1] - per_sample, 0.0)
  return {"latency_ms": latency * 1e3, "overhead": fixed / out[256], **{f"per_s@{b}": b / out[b] for b in BATCHES}}


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("workdirs", nargs="+", help="teacher workdir first, then students")
  ap.add_argument("--repeats", type=int, default=50)
  a = ap.parse_args()
  print(describe())
  print("command: python experiments/bench/bench_sampling.py " + " ".join(sys.argv[1:]))
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for w in a.workdirs:
      name = os.path.basename(os.path.normpath(w))
      forms, headers = {}, {}
      for source, optimize in (("inference form", True), ("as trained", False)):
        path = os.path.join(tmp, f"{name}_{optimize}.jaxexport")
        headers[source] = export.export_workdir(w, path, optimize=optimize)
        gen = export.load_generator(path)
        flops = efficiency.compiled_flops(gen.fn, np.zeros((256, gen.latent_dim), np.float32)) / 256
        forms[source] = (flops, measure(gen.fn, gen.latent_dim, a.repeats))
      rows.append((name, headers["as trained"]["params"], forms, headers["inference form"]["inference_form"]))
  print("| generator | params | export | MFLOPs/sample | overhead % (b256) | latency b1 ms | /s b1 | /s b64 | /s b256 | "
        "x teacher b1 | x teacher b64 | x teacher b256 |")
  print("|---" * 12 + "|")
  for name, params, forms, form in rows:
    for source, (flops, m) in forms.items():
      ref = rows[0][2][source][1]
      print(f"| {name} | {params:,} | {source} | {flops / 1e6:.2f} | {100 * m['overhead']:.0f} | {m['latency_ms']:.3f} | " +
            " | ".join(f"{m[f'per_s@{b}']:,.0f}" for b in BATCHES) + " | " +
            " | ".join(f"{m[f'per_s@{b}'] / ref[f'per_s@{b}']:.1f}" for b in BATCHES) + " |")
  print("\ninference forms chosen by timing on this machine:")
  for name, _, _, form in rows:
    print(f"  {name}: {form}")


if __name__ == "__main__":
  main()
