"""Teacher and students as TFLite files: size, agreement with JAX, speed, and what int8 costs.

    python experiments/bench/bench_tflite.py runs/teacher runs/distill_w12 runs/distill_w6 [--batch 256] [--fid 500]

For each workdir (the first is the teacher), its deployable generator is exported with
gandistill_jax.tflite.export_workdir_tflite twice, float32 and int8 weights (TFLite's
dynamic-range quantisation), with a dynamic batch, or with `--batch B` a fixed one. The
table gives parameters, file sizes, max |TFLite - JAX| over the export's fixed z (JAX at
highest matmul precision), and samples/s at batch 256 in the TFLite interpreter (float32,
int8) and in JAX (the jitted generator as trained, `load_generator(workdir)`), each the
median of runs of back-to-back calls of about 50 ms or more (eval.efficiency.time_call
with THROUGHPUT_SECONDS), with every column's ratio to the teacher's.

With `--fid N`, every generator's float32 and int8 TFLite files sample the evaluation's
fixed z (eval.evaluate.latents, N of them) and are scored like `gandistill eval` scores the
workdir (its recorded data, its config's feature network): the FID of each, and int8 minus
float32, the FID cost of int8 weights.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from machine import describe  # noqa: E402

from gandistill_jax import config as config_lib, export, tflite, workdir as workdir_lib  # noqa: E402
from gandistill_jax.eval import efficiency, evaluate  # noqa: E402

BATCH = 256
WEIGHTS = ("float32", "int8")


def samples_per_s(generate, latent_dim: int, repeats: int) -> float:
  z = np.random.default_rng(0).standard_normal((BATCH, latent_dim)).astype(np.float32)
  seconds = efficiency.time_call(generate, z, repeats, min_seconds=efficiency.THROUGHPUT_SECONDS)
  return BATCH / float(np.median(seconds))


def fids(workdir: str, generators: dict, num: int) -> dict:
  """weights -> FID of that generator's samples of the evaluation's fixed z, against the
  workdir's reference on its config's feature network (as evaluate_workdir scores it)."""
  config = workdir_lib.load_config(workdir)
  score = evaluate.scorer(evaluate.workdir_reference(workdir, config), config_lib.cache_dir(config),
                          config.eval.features, config.eval.inception_weights)
  z = evaluate.latents(config.model.latent_dim, num)
  return {w: score.quality(np.concatenate([g(z[i:i + 500]) for i in range(0, num, 500)]))["fid"]
          for w, g in generators.items()}


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("workdirs", nargs="+", help="teacher workdir first, then students")
  ap.add_argument("--batch", type=int, default=None, help="export with this fixed batch (default: dynamic)")
  ap.add_argument("--repeats", type=int, default=7, help="timed runs per generator and form (median)")
  ap.add_argument("--fid", type=int, default=0, metavar="N", help="also the FID of float32 and int8 on N samples")
  a = ap.parse_args()
  print(describe())
  import tensorflow as tf
  print(f"tensorflow {tf.__version__} (TFLite interpreter, default threads; XNNPACK delegate)")
  print("command: python experiments/bench/bench_tflite.py " + " ".join(sys.argv[1:]))
  batch = f"fixed batch {a.batch}" if a.batch else "dynamic batch"
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for w in a.workdirs:
      name = os.path.basename(os.path.normpath(w))
      headers, speed, generators = {}, {}, {}
      for weights in WEIGHTS:
        path = os.path.join(tmp, f"{name}_{weights}.tflite")
        headers[weights] = tflite.export_workdir_tflite(w, path, weights=weights, batch=a.batch)
        generators[weights] = tflite.load_tflite(path)
        speed[weights] = samples_per_s(generators[weights], generators[weights].latent_dim, a.repeats)
      jax_gen = export.load_generator(w)
      speed["jax"] = samples_per_s(jax_gen.fn, jax_gen.latent_dim, a.repeats)
      fid = fids(w, generators, a.fid) if a.fid else None
      rows.append((name, headers, speed, fid))
      print(f"  measured {name}", flush=True)
  teacher = rows[0][2]
  print(f"\nTFLite ({batch}) vs JAX, samples/s at batch {BATCH}; x teacher = the ratio to the teacher's samples/s\n")
  print("| generator | params | KB float32 | KB int8 | max abs diff float32 | max abs diff int8 | TFLite float32 /s | "
        "TFLite int8 /s | JAX /s | x teacher float32 | x teacher int8 | x teacher JAX |")
  print("|---" * 12 + "|")
  for name, h, s, _ in rows:
    print(f"| {name} | {h['float32']['params']:,} | {h['float32']['bytes'] / 1e3:,.1f} | {h['int8']['bytes'] / 1e3:,.1f} | "
          f"{h['float32']['max_abs_difference']:.1e} | {h['int8']['max_abs_difference']:.3f} | "
          + " | ".join(f"{s[k]:,.0f}" for k in ("float32", "int8", "jax")) + " | "
          + " | ".join(f"{s[k] / teacher[k]:.1f}" for k in ("float32", "int8", "jax")) + " |")
  if a.fid:
    print(f"\nFID of the TFLite files ({a.fid} samples of the evaluation's fixed z, each workdir's reference and "
          f"feature network)\n")
    print("| generator | FID float32 | FID int8 | int8 - float32 |")
    print("|---" * 4 + "|")
    for name, _, _, fid in rows:
      print(f"| {name} | {fid['float32']:.2f} | {fid['int8']:.2f} | {fid['int8'] - fid['float32']:+.2f} |")


if __name__ == "__main__":
  main()
