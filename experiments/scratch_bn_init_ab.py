"""A/B for the reference comparison: our scratch baseline with batch-norm scales initialised
N(1, 0.02) in G and D, as the PyTorch reference's dcgan_init does (ours start at 1), over
several seeds. Everything else is compare_reference.py's scratch row.

    nice python experiments/scratch_bn_init_ab.py --workdir runs/ab_bn --teacher-dir runs/compare/teacher \
        --width 24 --seeds 0 1 2 3 4

The scales are changed by swapping flax's BatchNorm for a subclass with that scale_init
before the package builds its models (an experiment, not a package option: it did not
close the gap, see README). Prints each seed's FID (10,000 samples) and mean ± sd.
"""
import argparse
import json
import os
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs"))


class BatchNorm(nn.BatchNorm):   # same class name, so the same parameter names
  scale_init: object = staticmethod(lambda key, shape, dtype=jnp.float32: 1 + 0.02 * jax.random.normal(key, shape, dtype))


nn.BatchNorm = BatchNorm

from gandistill_jax import study  # noqa: E402


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--workdir", required=True)
  ap.add_argument("--teacher-dir", required=True, help="the comparison's teacher (for the scratch eval's fidelity)")
  ap.add_argument("--width", type=int, default=24)
  ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
  ap.add_argument("--steps", type=int, default=4000)
  a = ap.parse_args()
  import fashion_mnist_teacher
  teacher = fashion_mnist_teacher.get_config()
  teacher.train.update(steps=a.steps, sample_every=1000, ckpt_every=1000)
  runs = []
  for seed in a.seeds:
    c = study.scratch_config(teacher, study.Student("dcgan", a.width), a.steps)
    c.seed = seed
    runs.append(study.Run(f"scratch_w{a.width}_bn1002_s{seed}", "scratch", c))
  res = study.run_all(runs, a.workdir, teacher_dir=a.teacher_dir, eval_num=10000, progress=False)
  fids = np.array([res[r.name]["fid"] for r in runs])
  print(json.dumps({r.name: round(res[r.name]["fid"], 2) for r in runs}))
  print(f"scratch w{a.width}, batch-norm scales N(1, 0.02): FID {fids.mean():.2f} ± {fids.std(ddof=1):.2f} "
        f"over seeds {a.seeds}")


if __name__ == "__main__":
  main()
