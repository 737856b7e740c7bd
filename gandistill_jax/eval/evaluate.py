"""`gandistill eval`: every number for a workdir, with its sample counts, reference
split and device, written to workdir/eval.json. The loop's periodic hook uses the same code."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from typing import Callable, Sequence

import jax
import ml_collections
import numpy as np

from gandistill_jax import config as config_lib, files, parallel, steps, workdir as workdir_lib
from gandistill_jax.data import arrays
from gandistill_jax.data.errors import DataError
from gandistill_jax.eval import classifier, efficiency, metrics

EVAL_SEED = 1234


def save_npz_atomic(path: str, **named) -> None:
  """np.savez through a temporary file and a rename (files.write_atomic): another process
  (of a multi-process run, or a concurrent eval) reads the old file or the whole new one."""
  files.write_atomic(path, lambda f: np.savez(f, **named), mode="wb")


@dataclasses.dataclass
class Reference:
  """The real images a score is measured against, and what they are.

  `images`/`labels`: the reference split, uint8 (N, H, W, C) at the model's size; `digest`:
  data.arrays.digest of them, the key of every cache built from them; `train`: () ->
  (images, labels) a domain classifier for this data learns from; `source`: where they came
  from (a data record, or the caller's arrays)."""
  images: np.ndarray
  labels: np.ndarray
  split: str
  source: dict
  train: Callable[[], tuple[np.ndarray, np.ndarray]]
  digest: str = ""

  def __post_init__(self):
    self.digest = self.digest or arrays.digest(self.images, self.labels)


def reference_from_config(data: ml_collections.ConfigDict, image_size: int, channels: int) -> Reference:
  """The eval split of a data config; its classifier learns from the config's train split."""
  from gandistill_jax.data import pipeline   # TensorFlow: only where data are read through tf.data
  images, labels = pipeline.load_split(data, data.eval_split, image_size, channels)
  return Reference(images, labels, data.eval_split, pipeline.describe_source(data),
                   lambda: pipeline.load_split(data, data.split, image_size, channels))


def reference_from_arrays(data, image_size: int, channels: int, what: str = "the caller's arrays") -> Reference:
  """The caller's own images (any form loop.train takes) as the reference; their classifier
  learns from the same images. No held-out split is implied: pass held-out images."""
  from gandistill_jax.data import pipeline
  images, labels = arrays.from_user_data(data)
  images = pipeline.fit_images(images, what, image_size, channels)
  return Reference(images, labels, what, {"source": "arrays", "examples": len(images)}, lambda: (images, labels))


FEATURES = ("auto", "domain", "inception")


def feature_network(ref: Reference, cache_dir: str, features: str = "auto", inception_weights: str = ""):
  """The network FID & co. score `ref` with (`eval.features`):

    domain     the shipped network for this very data (by digest), else a classifier
               trained on its labelled training images (cached by their digest)
    inception  InceptionV3 pool3 from `inception_weights` (inception.InceptionFeatures)
    auto       the shipped network if there is one for the data; else Inception when
               weights are given and the images are colour or unlabelled; else domain

  Data without labels and without Inception weights: one clear error."""
  if features not in FEATURES:
    raise DataError(f"eval.features={features!r} is unknown; use one of {', '.join(FEATURES)}")
  labelled = len(np.unique(ref.labels)) >= 2
  if features != "inception":
    shipped = classifier.shipped_network(ref.images.shape[1:], ref.digest)
    if shipped is not None:
      return shipped
  if features == "inception" or (features == "auto" and inception_weights and
                                 (ref.images.shape[-1] == 3 or not labelled)):
    from gandistill_jax.eval import inception
    if not inception_weights:
      raise DataError("eval.features='inception' needs eval.inception_weights=<.npz> (convert it once with "
                      "experiments/tools/convert_inception_weights.py)")
    return inception.InceptionFeatures(inception_weights)
  images, labels = ref.train()
  if len(np.unique(labels)) < 2:
    raise DataError(f"the data to score against ({ref.source.get('path') or ref.source.get('folder') or ref.source['source']}) "
                    f"has no class labels, so no domain classifier can be trained for its FID; give labels "
                    f"(npz: <split>_labels; folder: one subfolder per class; arrays: (images, labels)), score on "
                    f"Inception features (--set eval.inception_weights=<npz>) or on your own: gd.fid(a, b, features=fn)")
  num_classes = int(max(labels.max(), ref.labels.max())) + 1
  return classifier.load_or_train(cache_dir, images, labels, (ref.images, ref.labels), num_classes)


def reference_features(extractor: classifier.FeatureExtractor, ref: Reference, cache_dir: str) -> np.ndarray:
  """The feature network's features of the reference images, cached under the digest of
  (network id, data digest); a cache file that records other ones is never served."""
  key = hashlib.sha256(f"{extractor.id} {ref.digest}".encode()).hexdigest()[:16]
  path = os.path.join(cache_dir, f"reference-{key}.npz")
  if os.path.exists(path):
    with np.load(path, allow_pickle=False) as f:
      if str(f["feature_network"]) == extractor.id and str(f["data_sha256"]) == ref.digest:
        return f["features"]
  _, feats = extractor.logits_and_features(arrays.to_float(ref.images))
  os.makedirs(cache_dir, exist_ok=True)
  save_npz_atomic(path, features=feats, feature_network=np.array(extractor.id), data_sha256=np.array(ref.digest))
  return feats


@dataclasses.dataclass
class Scorer:
  """A reference, the feature network that scores against it and its real features."""
  reference: Reference
  extractor: classifier.FeatureExtractor
  real: np.ndarray
  cache_dir: str = ""

  @property
  def is_inception(self) -> bool:
    return self.extractor.num_classes == 0

  def outputs(self, images: np.ndarray, cache: bool = False) -> tuple[np.ndarray | None, np.ndarray]:
    """(logits or None, features) of `images`. `cache`: kept in the cache folder under the
    digest of (network id, the images' bytes), so a teacher's samples are scored once for
    its own evaluation and every student's fidelity."""
    if not cache:
      return self.extractor.logits_and_features(images)
    images = np.ascontiguousarray(images, np.float32)
    key = hashlib.sha256(f"{self.extractor.id} {images.shape}".encode() + images.tobytes()).hexdigest()
    path = os.path.join(self.cache_dir, f"generated-{key[:24]}.npz")
    if os.path.exists(path):
      with np.load(path, allow_pickle=False) as f:
        if str(f["key"]) == key:
          return (f["logits"] if "logits" in f else None), f["features"]
    logits, feats = self.extractor.logits_and_features(images)
    os.makedirs(self.cache_dir, exist_ok=True)
    save_npz_atomic(path, features=feats, key=np.array(key), **({} if logits is None else {"logits": logits}))
    return logits, feats

  def quality(self, samples: np.ndarray, prdc_num: int = 5000, latent_seed: int | None = EVAL_SEED,
              outputs: tuple | None = None) -> dict:
    """`quality` of `samples` with the protocol; `latent_seed`: the seed of the z they were
    generated from (None for images given as such); `outputs`: their (logits, features)
    when already computed."""
    logits, feats = outputs if outputs is not None else self.outputs(samples)
    return quality(logits, feats, self.real, self.extractor.num_classes, prdc_num) | {
        "protocol": self.protocol(len(samples), latent_seed)}

  def protocol(self, generated: int, latent_seed: int | None = EVAL_SEED) -> dict:
    """What reproduces a score: sample counts, the reference data, the feature network and
    the seed of the fixed z the samples came from."""
    r = self.extractor.record
    return {"generated": generated, "reference": len(self.real), "reference_split": self.reference.split,
            "reference_data": {"sha256": self.reference.digest, "source": self.reference.source},
            "feature_network": {k: r[k] for k in ("name", "weights_sha256", "test_accuracy", "train_data_sha256",
                                                           "test_data_sha256", "weights", "input")
                                if k in r} | {"shipped": "eval_data_sha256" in r},
            "latent_seed": latent_seed}


def scorer(ref: Reference, cache_dir: str, features: str = "auto", inception_weights: str = "") -> Scorer:
  """The Scorer of `ref` on the network feature_network picks (eval.features)."""
  extractor = feature_network(ref, cache_dir, features, inception_weights)
  return Scorer(ref, extractor, reference_features(extractor, ref, cache_dir), cache_dir)


def reference(config: ml_collections.ConfigDict) -> Scorer:
  """The Scorer for the eval split of `config.data` at the model's size, on config.eval's network."""
  return scorer(reference_from_config(config.data, config.model.image_size, config.model.channels),
                config_lib.cache_dir(config), config.eval.features, config.eval.inception_weights)


def latents(latent_dim: int, num: int, seed: int = EVAL_SEED) -> np.ndarray:
  """The evaluation's fixed z: the same for every run, so runs are scored on the same z."""
  return np.asarray(steps.sample_latent(jax.random.key(seed), num, latent_dim))


def generate(gen, variables, latent_dim: int, num: int, seed: int = EVAL_SEED, batch: int = 500) -> np.ndarray:
  return generate_for(gen, variables, latents(latent_dim, num, seed), batch)


def generate_for(gen, variables, z: np.ndarray, batch: int = 500) -> np.ndarray:
  """Images for the given z: a module with its variables, or (variables None) a function."""
  apply = jax.jit(gen if variables is None else lambda z: gen.apply(variables, z))
  return np.concatenate([np.asarray(apply(z[i:i + batch])) for i in range(0, len(z), batch)])


def _fidelity_teacher(workdir: str, config, teacher_dir: str):
  """What a workdir's generator is compared with, per z: a distill run's teacher (a function
  z -> images, or (z, images) of stored pairs), or the generator of `teacher_dir`; None
  where there is none to compare with (said in one line: a function teacher the caller
  kept, or a teacher file that moved or changed)."""
  from gandistill_jax import teachers
  if teacher_dir:
    t_gen, t_vars, _, _ = workdir_lib.restore_network(teacher_dir, "generator")
    return lambda z: t_gen.apply(t_vars, z)
  if "distill" not in config:
    return None
  if config.distill.teacher_kind == "workdir":
    t_gen, t_vars, _, _ = workdir_lib.restore_network(workdir, "teacher")
    return lambda z: t_gen.apply(t_vars, z)
  if not teachers.file_unchanged(config):
    print(f"gandistill: no fidelity to the teacher: {workdir} learned from {teachers.article(config.distill.teacher_kind)} teacher "
          f"({config.distill.teacher_dir or 'a function'}) that is not there as it was", file=sys.stderr, flush=True)
    return None
  path = config.distill.teacher_dir
  return teachers.read_pairs(path) if config.distill.teacher_kind == "pairs" else teachers.resolve(path).generator()


def quality(logits, feats, real_features, num_classes: int, prdc_num: int = 5000) -> dict:
  """FID, KID, precision/recall, density/coverage of features against the real ones, and,
  with a classifier's logits, its classifier score and class coverage."""
  kid_mean, kid_se = metrics.kid(real_features, feats)
  n = min(prdc_num, len(feats), len(real_features))
  out = {"fid": metrics.fid(real_features, feats), "kid": kid_mean, "kid_se": kid_se,
         **metrics.prdc(real_features[:n], feats[:n])}
  if logits is not None:
    out |= {"classifier_score": metrics.classifier_score(logits), **metrics.class_coverage(logits, num_classes)}
  out["counts"] = {"generated": len(feats), "reference": len(real_features), "prdc_each": n,
                   "kid_subsets": 50, "kid_subset_size": min(1000, len(feats), len(real_features))}
  return out


def fidelity(student_images, teacher_images, student_features, teacher_features) -> dict:
  """Per-z agreement of student and teacher on the same z: pixel L1, PSNR, feature L2."""
  s, t = np.asarray(student_images, np.float64), np.asarray(teacher_images, np.float64)
  axes = tuple(range(1, s.ndim))
  mse = ((s - t) ** 2).mean(axes)
  return {"pixel_l1": float(np.abs(s - t).mean()),
          "psnr_db": float(np.mean(10 * np.log10(4.0 / np.maximum(mse, 1e-12)))),  # peak-to-peak 2 on [-1, 1]
          "feature_l2": float(np.linalg.norm(np.asarray(student_features) - np.asarray(teacher_features),
                                             axis=1).mean()),
          "num_z": len(s)}


def workdir_reference(workdir: str, config: ml_collections.ConfigDict, overrides: Sequence[str] = (),
                      data=None) -> Reference:
  """The data a workdir is scored against: the source its data.json records (refused if its
  files changed since), or, as an explicit choice, `data` (the caller's images) or data.*
  `overrides`. A run trained on the caller's arrays is scored against them (data.npz)."""
  m = config.model
  if data is not None:
    return reference_from_arrays(data, m.image_size, m.channels)
  if any(item.startswith("data.") for item in overrides):
    return reference_from_config(config.data, m.image_size, m.channels)
  record = workdir_lib.read_data_record(workdir)
  if record is None:
    return reference_from_config(config.data, m.image_size, m.channels)
  from gandistill_jax.data import pipeline
  if record["source"] not in ("auto", "tfds", "idx", "folder", "npz"):   # the caller's arrays (any release)
    kept = workdir_lib.read_data_arrays(workdir)
    if kept is None:
      raise DataError(f"{workdir} was trained on the caller's arrays, which it does not keep; pass the images to "
                      f"score against: gd.evaluate({workdir!r}, data=(images, labels))")
    return reference_from_arrays(kept, m.image_size, m.channels, what=f"{workdir}/{workdir_lib.DATA_ARRAYS}")
  changed = pipeline.source_changed(record)
  if changed:
    where = record.get("folder", record.get("path"))
    raise DataError(f"{workdir}: {changed}; to score against the data there now, say so: "
                    f"--set data.path={where} (gd.evaluate(..., overrides=['data.path=...']))")
  return reference_from_config(pipeline.source_config(record, config.data), m.image_size, m.channels)


def evaluate_workdir(workdir: str, teacher_dir: str = "", num: int = 10000, fidelity_num: int = 2000,
                     with_efficiency: bool = True, overrides: Sequence[str] = (), data=None) -> dict:
  """Every number for a workdir's deployable generator, written to workdir/eval.json, with
  the protocol that reproduces it. The reference is the data the run read
  (workdir_reference); `overrides` ('key=value', data.* and eval.* keys only) and `data`
  (the caller's images) are explicit choices of other reference data or networks."""
  if num < 1:
    raise ValueError(f"num={num}: evaluation needs at least 1 sample")
  gen, variables, config, _ = workdir_lib.restore_network(workdir, "generator")
  for item in overrides:
    if not item.partition("=")[0].startswith(("data.", "eval.")):
      raise ValueError(f"--set {item!r}: eval takes data.* and eval.* keys only (the run's own config is fixed)")
  config = config_lib.apply_overrides(config, overrides)
  latent, cache = config.model.latent_dim, config_lib.cache_dir(config)
  score = scorer(workdir_reference(workdir, config, overrides, data), cache, config.eval.features,
                 config.eval.inception_weights)
  num = min(num, config.eval.inception_num) if score.is_inception else num
  samples = generate(gen, variables, latent, num)
  outputs = score.outputs(samples, cache=score.is_inception)
  result = {"workdir": os.path.basename(os.path.normpath(workdir)), "kind": "distill" if "distill" in config else "gan",
            "dataset": config.data.name, "reference_split": score.reference.split,
            "features": "inception" if score.is_inception else "domain",
            "feature_extractor": score.extractor.describe(), **score.quality(samples, outputs=outputs)}
  inception = score if score.is_inception else (
      scorer(score.reference, cache, "inception", config.eval.inception_weights) if config.eval.inception_weights
      else None)
  if inception is not None:
    n = min(num, config.eval.inception_num)
    fake = outputs[1][:n] if inception is score else inception.outputs(samples[:n])[1]
    kid_mean, kid_se = metrics.kid(inception.real, fake)
    result["inception"] = {"fid": metrics.fid(inception.real, fake), "kid": kid_mean, "kid_se": kid_se,
                           "generated": n, "reference": len(inception.real),
                           "weights_sha256": inception.extractor.record["weights_sha256"],
                           "weights": os.path.basename(config.eval.inception_weights)}
  k = min(fidelity_num, num)
  teacher = _fidelity_teacher(workdir, config, teacher_dir)
  if isinstance(teacher, tuple):   # stored pairs: the student on their z against their images
    z, t_samples = teacher[0][:k], teacher[1][:k]
    s_samples = generate_for(gen, variables, z)
    result["fidelity"] = fidelity(s_samples, t_samples, score.outputs(s_samples)[1], score.outputs(t_samples)[1])
    result["fidelity"]["z"] = "the teacher's stored pairs"
  elif teacher is not None:   # the teacher's samples on the same z, scored as in its own evaluation (cached)
    t_samples = generate_for(teacher, None, latents(latent, num if score.is_inception else k))   # all num: cached
    t_outputs = score.outputs(t_samples, cache=score.is_inception)
    result["fidelity"] = fidelity(samples[:k], t_samples[:k], outputs[1][:k], t_outputs[1][:k])
  if with_efficiency:
    result["efficiency"] = efficiency.efficiency(gen, variables, latent)
  if parallel.is_primary():
    files.write_atomic(os.path.join(workdir, "eval.json"), lambda f: json.dump(result, f, indent=2))
  return result


def periodic_eval_fn(config, data=None):
  """The loop's eval hook: FID/KID/PR of `train.eval_num` samples of the current weights,
  against the eval split of the run's data (or `data`, the caller's arrays)."""
  m = config.model
  ref = reference_from_config(config.data, m.image_size, m.channels) if data is None else \
      reference_from_arrays(data, m.image_size, m.channels)
  score = scorer(ref, config_lib.cache_dir(config), config.eval.features, config.eval.inception_weights)

  def eval_fn(task, state):
    variables = parallel.to_host(jax.jit(task.generator_variables)(state))   # local arrays in every process
    samples = generate(task.generator, variables, task.latent_dim, config.train.eval_num)
    q = score.quality(samples, prdc_num=config.train.eval_num)
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
