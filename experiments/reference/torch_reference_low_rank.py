"""The PyTorch reference (experiments/reference/torch_dcgan_train.py) with a rank-R latent
projection in its student, so that it has the size of this package's low-rank students.

    python experiments/reference/torch_reference_low_rank.py --rank 16 --mode pixel --width 24 --steps 4000 \
        --out ref_pixel_w24r16 --dir runs/compare/reference --teacher ref_teacher

Every argument but --rank goes to the reference unchanged. The student's generator (width
--width) becomes z(100) -> Linear(100, R) -> Linear(R, 7x7x2n) -> ... (the reference's
G after its first layer), as recipes.Student's `proj_rank` does here; a teacher of another
width keeps the reference's G. Everything else (init, losses, optimisers, EMA, batch-norm
recalibration, samples) is the reference's own code. torch is an experiment-only dependency.
"""
import argparse
import importlib.util
import os
import sys

REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_dcgan_train.py")


def main():
  p = argparse.ArgumentParser(add_help=False)
  p.add_argument("--rank", type=int, required=True)
  p.add_argument("--width", type=int, default=64)
  a, _ = p.parse_known_args()
  argv = list(sys.argv)
  i = argv.index("--rank")
  del argv[i:i + 2]
  spec = importlib.util.spec_from_file_location("torch_dcgan_train", REFERENCE)
  ref = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(ref)
  nn, full = ref.nn, ref.make_G

  def make_G(n):
    g = full(n)
    if n != a.width:
      return g
    proj = g[0]
    return nn.Sequential(nn.Linear(ref.Z, a.rank), nn.Linear(a.rank, proj.out_features), *g[1:])

  ref.make_G = make_G
  sys.argv = argv
  ref.main()


if __name__ == "__main__":
  main()
