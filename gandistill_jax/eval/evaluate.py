"""`gandistill eval`: every number for a workdir, with its sample counts, reference
split and device, written to workdir/eval.json. The loop's periodic hook uses the same code."""
from __future__ import annotations

import json
import os
from typing import Sequence

import jax
import ml_collections
import numpy as np

from gandistill_jax import config as config_lib, export, parallel, steps
from gandistill_jax.data import pipeline
from gandistill_jax.eval import classifier, efficiency, metrics

EVAL_SEED = 1234


def save_npz_atomic(path: str, **arrays) -> None:
  """np.savez through a temporary file of this process and a rename: another process (of
  a multi-process run, or a concurrent eval) reads the old file or the whole new one."""
  tmp = f"{path}.{os.getpid()}.tmp.npz"
  np.savez(tmp, **arrays)
  os.replace(tmp, path)


def reference(config: ml_collections.ConfigDict):
  """(domain classifier, its features of the real eval split) for the run's dataset and
  image size; both are computed once and cached."""
  d, m = config.data, config.model
  key = f"{d.name}-{m.image_size}px-{m.channels}ch"
  load = lambda split: pipeline.load_split(d, split, m.image_size, m.channels)
  test_images, test_labels = load(d.eval_split)
  ref_path = os.path.join(config_lib.cache_dir(config), f"reference-{key}-{d.eval_split}-classifier.npz")
  def train():
    images, labels = load(d.split)
    return pipeline.to_float(images), labels
  extractor = classifier.load_or_train(config_lib.cache_dir(config), key, train, (pipeline.to_float(test_images), test_labels),
                                       num_classes=int(test_labels.max()) + 1)
  if os.path.exists(ref_path):
    with np.load(ref_path, allow_pickle=False) as f:
      return extractor, f["features"]
  _, feats = extractor.logits_and_features(pipeline.to_float(test_images))
  save_npz_atomic(ref_path, features=feats)
  return extractor, feats


def inception_reference(config: ml_collections.ConfigDict):
  """(features fn, real eval-split features, cache file name) on InceptionV3 pool3, or None
  without weights. The real features are cached, keyed by dataset, size, channels, split,
  the weights file and the resize (bilinear to 299, grey repeated to RGB)."""
  weights = os.path.expanduser(config.get("eval", {}).get("inception_weights", ""))
  if not weights:
    return None
  from gandistill_jax.eval import inception
  d, m = config.data, config.model
  features = inception.load_inception(weights)
  apply = lambda x: classifier.batched_apply(features, np.asarray(x, np.float32), batch=100)
  tag = os.path.splitext(os.path.basename(weights))[0]
  name = f"reference-{d.name}-{m.image_size}px-{m.channels}ch-{d.eval_split}-{tag}-bilinear299.npz"
  path = os.path.join(config_lib.cache_dir(config), name)
  if os.path.exists(path):
    with np.load(path, allow_pickle=False) as f:
      return apply, f["features"], name
  images, _ = pipeline.load_split(d, d.eval_split, m.image_size, m.channels)
  real = apply(pipeline.to_float(images))
  save_npz_atomic(path, features=real)
  return apply, real, name


def latents(latent_dim: int, num: int, seed: int = EVAL_SEED) -> np.ndarray:
  """The evaluation's fixed z: the same for every run, so runs are scored on the same z."""
  return np.asarray(steps.sample_latent(jax.random.key(seed), num, latent_dim))


def generate(gen, variables, latent_dim: int, num: int, seed: int = EVAL_SEED, batch: int = 500) -> np.ndarray:
  apply = jax.jit(lambda z: gen.apply(variables, z))
  z = latents(latent_dim, num, seed)
  return np.concatenate([np.asarray(apply(z[i:i + batch])) for i in range(0, num, batch)])


def quality(extractor, real_features, samples, num_classes: int, prdc_num: int = 5000) -> dict:
  logits, feats = extractor.logits_and_features(samples)
  kid_mean, kid_se = metrics.kid(real_features, feats)
  n = min(prdc_num, len(feats), len(real_features))
  out = {"fid": metrics.fid(real_features, feats), "kid": kid_mean, "kid_se": kid_se,
         **metrics.prdc(real_features[:n], feats[:n]),
         "classifier_score": metrics.classifier_score(logits),
         **metrics.class_coverage(logits, num_classes)}
  out["counts"] = {"generated": len(feats), "reference": len(real_features), "prdc_each": n,
                   "kid_subsets": 50, "kid_subset_size": min(1000, len(feats), len(real_features))}
  return out


def fidelity(extractor, student_images, teacher_images) -> dict:
  """Per-z agreement of student and teacher on the same z: pixel L1, PSNR, feature L2."""
  s, t = np.asarray(student_images, np.float64), np.asarray(teacher_images, np.float64)
  axes = tuple(range(1, s.ndim))
  mse = ((s - t) ** 2).mean(axes)
  _, fs = extractor.logits_and_features(s.astype(np.float32))
  _, ft = extractor.logits_and_features(t.astype(np.float32))
  return {"pixel_l1": float(np.abs(s - t).mean()),
          "psnr_db": float(np.mean(10 * np.log10(4.0 / np.maximum(mse, 1e-12)))),  # peak-to-peak 2 on [-1, 1]
          "feature_l2": float(np.linalg.norm(fs - ft, axis=1).mean()), "num_z": len(s)}


def evaluate_workdir(workdir: str, teacher_dir: str = "", num: int = 10000, fidelity_num: int = 2000,
                     with_efficiency: bool = True, overrides: Sequence[str] = ()) -> dict:
  """Every number for a workdir's deployable generator, written to workdir/eval.json.
  `overrides` ('key=value', data.* and eval.* keys only) change where the reference data
  and the evaluation networks come from, not the run."""
  gen, variables, config = export.workdir_generator_variables(workdir)
  for item in overrides:
    if not item.partition("=")[0].startswith(("data.", "eval.")):
      raise ValueError(f"--set {item!r}: eval takes data.* and eval.* keys only (the run's own config is fixed)")
  config = config_lib.apply_overrides(config, overrides)
  latent = config.model.latent_dim
  extractor, real = reference(config)
  samples = generate(gen, variables, latent, num)
  result = {"workdir": os.path.basename(os.path.normpath(workdir)), "kind": "distill" if "distill" in config else "gan",
            "dataset": config.data.name, "reference_split": config.data.eval_split,
            "feature_extractor": f"domain classifier ({extractor.name}, test accuracy {extractor.test_accuracy:.4f})",
            **quality(extractor, real, samples, extractor.model.num_classes)}
  inception_ref = inception_reference(config)
  if inception_ref is not None:
    features, real_inception, ref_name = inception_ref
    n = min(num, config.get("eval", {}).get("inception_num", num))
    fake = features(samples[:n])
    kid_mean, kid_se = metrics.kid(real_inception, fake)
    result["inception"] = {"fid": metrics.fid(real_inception, fake), "kid": kid_mean, "kid_se": kid_se,
                           "generated": n, "reference": len(real_inception), "reference_cache": ref_name,
                           "weights": os.path.basename(config.eval.inception_weights)}
  teacher = None
  if "distill" in config:
    teacher = export.workdir_generator_variables(workdir, "teacher")
  elif teacher_dir:
    teacher = export.workdir_generator_variables(teacher_dir)
  if teacher is not None:
    t_gen, t_vars, _ = teacher
    fidelity_num = min(fidelity_num, num)
    result["fidelity"] = fidelity(extractor, samples[:fidelity_num],
                                  generate(t_gen, t_vars, latent, fidelity_num))
  if with_efficiency:
    result["efficiency"] = efficiency.efficiency(gen, variables, latent)
  if parallel.is_primary():
    with open(os.path.join(workdir, "eval.json"), "w") as f:
      json.dump(result, f, indent=2)
  return result


def periodic_eval_fn(config):
  """The loop's eval hook: FID/KID/PR of `train.eval_num` samples of the current weights."""
  extractor, real = reference(config)

  def eval_fn(task, state):
    variables = parallel.to_host(jax.jit(task.generator_variables)(state))   # local arrays in every process
    samples = generate(task.generator, variables, task.latent_dim, config.train.eval_num)
    q = quality(extractor, real, samples, extractor.model.num_classes, prdc_num=config.train.eval_num)
    return {k: v for k, v in q.items() if isinstance(v, (int, float))}
  return eval_fn


def summary_table(results: dict[str, dict]) -> str:
  """A markdown table of named eval results."""
  cols = ["params", "flops_per_sample", "samples_per_s_batch256", "fid", "kid", "precision", "recall",
          "density", "coverage", "pixel_l1", "psnr_db"]
  if any("inception" in r for r in results.values()):
    cols.insert(cols.index("kid") + 1, "inception_fid")
  lines = ["| run | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
  for name, r in results.items():
    flat = r | r.get("efficiency", {}) | r.get("fidelity", {}) | {"inception_fid": r.get("inception", {}).get("fid")}
    cells = []
    for c in cols:
      v = flat.get(c)
      cells.append("" if v is None else (f"{v:,.0f}" if c in ("params", "flops_per_sample", "samples_per_s_batch256")
                                         else f"{v:.4g}"))
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)
