"""The teacher recipe, one change at a time: the Fashion-MNIST teacher config with batch
norm in D (`model.d_batch_norm`) and the G update reusing the D update's fake batch
(`loss.reuse_fake`) switched off and on, each run scored with the package's evaluation.

    nice python experiments/study/teacher_ablation.py --workdir runs/ablation --steps 4000

Resumable; prints one table and writes ablation.md / ablation.json in --workdir.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "configs"))

from gandistill_jax import study  # noqa: E402

VARIANTS = {  # name: (model.d_batch_norm, loss.reuse_fake)
    "neither": (False, False),
    "d_batch_norm": (True, False),
    "reuse_fake": (False, True),
    "both": (True, True),
}


def variant_config(steps_: int, d_batch_norm: bool, reuse_fake: bool):
  import fashion_mnist_teacher
  c = fashion_mnist_teacher.get_config()
  c.model.d_batch_norm = d_batch_norm
  c.loss.reuse_fake = reuse_fake
  c.train.steps = steps_
  c.train.update(sample_every=1000, ckpt_every=1000)
  return c


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--steps", type=int, default=4000)
  ap.add_argument("--num", type=int, default=10000, help="samples scored per run")
  a = ap.parse_args()
  runs = [study.Run(n, "teacher", variant_config(a.steps, *v)) for n, v in VARIANTS.items()]
  results = study.run_all(runs, a.workdir, eval_num=a.num, progress=False)
  lines = [f"Fashion-MNIST teacher (DCGAN width 64), {a.steps} steps, {a.num} samples, FID on the package's "
           "domain-classifier features against the test split (lower is better).", "",
           "| model.d_batch_norm | loss.reuse_fake | FID | KID | precision | recall | train min |",
           "|---|---|---|---|---|---|---|"]
  for run in runs:
    r, (bn, reuse) = results[run.name], VARIANTS[run.name]
    minutes = "" if math.isnan(r["train_seconds"]) else f"{r['train_seconds'] / 60:.1f}"   # nan: trained elsewhere
    lines.append(f"| {bn} | {reuse} | {r['fid']:.2f} | {r['kid']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                 f"{minutes} |")
  md = "\n".join(lines)
  with open(os.path.join(a.workdir, "ablation.md"), "w") as f:
    f.write(md + "\n")
  with open(os.path.join(a.workdir, "ablation.json"), "w") as f:
    json.dump({n: {k: results[n][k] for k in ("fid", "kid", "precision", "recall", "train_seconds")} for n in VARIANTS},
              f, indent=2)
  print(md)


if __name__ == "__main__":
  main()
