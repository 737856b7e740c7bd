"""Singular values of a trained generator's latent projection z -> 4x4xC.

    python experiments/study/projection_spectrum.py runs/sweep/joint_w8r12_random_2000 [more workdirs]

The projection is W = A B for a rank-r student and the `proj` kernel otherwise
(`models.dcgan.projection_matrix`). The number of large singular values is how many
directions of z the generator can use: a scratch w8 r12 student whose factors started at
DCGAN's init ended with one (1.2, then 0.02) and collapsed, which led to
`model.proj_init='matched'` (docs/reference_comparison.md).
"""
from __future__ import annotations

import sys

import numpy as np

from gandistill_jax import export
from gandistill_jax.models import dcgan


def main():
  for workdir in sys.argv[1:]:
    _, variables, _ = export.workdir_generator_variables(workdir, "auto")   # EMA weights where kept
    sv = np.linalg.svd(np.asarray(dcgan.projection_matrix(variables["params"])), compute_uv=False)
    print(f"{workdir}: rank {int(np.sum(sv > 1e-6 * sv[0]))}, largest singular values "
          f"{np.array2string(sv[:8], precision=2)}")


if __name__ == "__main__":
  main()
