"""The floor of every score at a study's sample counts: `--num` real training images
scored like a generator's samples against the reference split (same features, same
counts). A generator cannot be expected to score below it; on a small held-out split it is
far above zero (FID is biased upwards at few samples, recall needs many).

    python experiments/study/real_vs_real.py --config experiments/configs/emoji_demo.py --num 1000
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from gandistill_jax import cli, config as config_lib
from gandistill_jax.data import arrays, pipeline
from gandistill_jax.eval import evaluate


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("--config", required=True)
  ap.add_argument("--num", type=int, default=1000)
  ap.add_argument("--set", action="append", metavar="KEY=VALUE")
  a = ap.parse_args()
  config = config_lib.apply_overrides(config_lib.upgrade(cli.load_config_file(a.config)), a.set or [])
  score = evaluate.reference(config)
  images, _ = pipeline.load_split(config.data, config.data.split, config.model.image_size, config.model.channels)
  pick = np.random.default_rng(0).permutation(len(images))[:a.num]
  q = score.quality(arrays.to_float(images[pick]), latent_seed=None)
  print(json.dumps({k: q[k] for k in ("fid", "kid", "kid_se", "precision", "recall", "density", "coverage")}
                   | {"counts": q["counts"], "features": score.extractor.describe(),
                      "reference_split": score.reference.split}, indent=2))


if __name__ == "__main__":
  main()
