"""Inception FID with the literature's protocol, for workdirs of one dataset.

    nice python experiments/study/inception_fid.py runs/frontier/teacher runs/frontier/cell_a ... \
        --weights ~/.cache/gandistill_jax/inception_fid.npz

The protocol of Lucic et al. 2018 ("Are GANs Created Equal?", Fashion-MNIST FID 26.5 +- 1.6
for a tuned non-saturating GAN, 21.5 +- 1.6 for WGAN) and Heusel et al. 2017: 10,000 samples
against the 10,000 images of the test split, InceptionV3 pool3 (2048-d), grey repeated to
RGB, bilinear to 299x299 (gandistill_jax.eval.inception). FID = |mu_r - mu_g|^2 +
Tr(S_r + S_g - 2 (S_r S_g)^(1/2)).

Each workdir's score goes to <workdir>/inception_fid.json (its eval.json, the domain-network
evaluation, is left as it is); a workdir that has one for the same weights and count is
skipped, so the command continues where a killed one stopped. The test split's features are
computed once and cached (about 33 minutes for 10,000 images on 2 CPU cores).
"""
from __future__ import annotations

import argparse
import json
import os
import time

from gandistill_jax import config as config_lib, files, workdir as workdir_lib
from gandistill_jax.eval import evaluate, metrics

RESULT = "inception_fid.json"


def score_workdir(workdir: str, weights: str, num: int, cache_dir: str = "") -> dict:
  """The Inception FID/KID of `num` samples of the workdir's generator (the evaluation's
  fixed z) against its data's eval split; written to workdir/inception_fid.json. Features
  are cached in `cache_dir` (default: the run's eval.cache_dir)."""
  gen, variables, config, _ = workdir_lib.restore_network(workdir, "generator")
  cache = cache_dir or config_lib.cache_dir(config)
  score = evaluate.scorer(evaluate.workdir_reference(workdir, config), cache, "inception", weights)
  t0 = time.perf_counter()
  samples = evaluate.generate(gen, variables, config.model.latent_dim, num)
  _, feats = score.outputs(samples, cache=True)
  kid, kid_se = metrics.kid(score.real, feats)
  result = {"fid": metrics.fid(score.real, feats), "kid": kid, "kid_se": kid_se,
            "seconds": time.perf_counter() - t0, "protocol": score.protocol(num)}
  files.write_atomic(os.path.join(workdir, RESULT), lambda f: json.dump(result, f, indent=2))
  return result


def done(workdir: str, weights: str, num: int) -> bool:
  path = os.path.join(workdir, RESULT)
  if not os.path.exists(path):
    return False
  p = json.load(open(path))["protocol"]
  return p["generated"] == num and p["feature_network"]["weights_sha256"] == files.sha256(weights)


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("workdirs", nargs="+")
  ap.add_argument("--weights", default="~/.cache/gandistill_jax/inception_fid.npz",
                  help="the FID InceptionV3 as an npz (experiments/tools/convert_inception_weights.py)")
  ap.add_argument("--num", type=int, default=10000)
  ap.add_argument("--cache-dir", default="", help="where features are cached (default: each run's eval.cache_dir)")
  a = ap.parse_args()
  weights = os.path.expanduser(a.weights)
  for w in a.workdirs:
    if done(w, weights, a.num):
      r = json.load(open(os.path.join(w, RESULT)))
    else:
      r = score_workdir(w, weights, a.num, a.cache_dir)
    print(f"{w}: Inception FID {r['fid']:.2f} (KID {r['kid'] * 1e3:.2f}e-3, {r['protocol']['generated']} samples "
          f"against {r['protocol']['reference']} of {r['protocol']['reference_split']}, {r['seconds'] / 60:.1f} min)",
          flush=True)


if __name__ == "__main__":
  main()
