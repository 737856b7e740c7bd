"""The library in five calls: train a teacher, distill it, train the scratch baseline,
score, deploy. Each is what the `gandistill` command of the same name does; see the
README's "Use as a library".

    import gandistill_jax as gd
    gd.train_teacher(teacher_config, "runs/teacher")
    gd.distill_student(student_config, "runs/teacher", "runs/student")
    gd.evaluate("runs/student")["fid"]
    gd.fid(images_a, images_b)
    gd.load_generator("runs/student")(z)
"""
from __future__ import annotations

import os
from typing import Callable, Sequence

import ml_collections
import numpy as np

from gandistill_jax import config as config_lib, distill as distill_lib, loop, objectives, tasks
from gandistill_jax.data import arrays, pipeline
from gandistill_jax.eval import evaluate as evaluate_lib, metrics


def train_teacher(config: ml_collections.ConfigDict, workdir: str, data=None, progress: bool = True):
  """Trains (or resumes) the GAN `config.model` adversarially in `workdir`; returns the
  final state. `data`: own images instead of `config.data` (loop.train)."""
  return loop.train(config, workdir, tasks.gan_task(config, "teacher"), progress=progress, data=data)


def train_scratch(config: ml_collections.ConfigDict, workdir: str, data=None, progress: bool = True):
  """The baseline: a student-size `config.model` trained adversarially from scratch."""
  return loop.train(config, workdir, tasks.gan_task(config, "scratch"), progress=progress, data=data)


def distill_student(config: ml_collections.ConfigDict, teacher_dir: str, workdir: str,
            extra_terms: Sequence[objectives.Term] = (), data=None, progress: bool = True):
  """Distills the teacher trained in `teacher_dir` into the student `config.model`
  (`gandistill distill`; not named `distill`, which is the module gandistill_jax.distill).

  `config` needs a `distill` section (distill.default_distill_config()); the teacher's
  architecture is read from its workdir and recorded as `config.teacher_model`.
  `extra_terms` are objectives.Term added to the configured ones (give the same ones to
  resume). Returns the final state."""
  config = config_lib.upgrade(ml_collections.ConfigDict(config.to_dict()))
  if "distill" not in config:
    raise ValueError("the config has no 'distill' section; add distill.default_distill_config()")
  teacher_model, teacher = loop.load_teacher(teacher_dir, config)
  config.teacher_model = ml_collections.ConfigDict(teacher_model.to_dict())
  config.distill.teacher_dir = os.path.abspath(teacher_dir)
  task = distill_lib.distill_task(config, teacher, extra_terms)
  return loop.train(config, workdir, task, progress=progress, data=data)


def _float_images(images) -> np.ndarray:
  """float32 (N, H, W, C) in [-1, 1] from uint8 [0, 255] or float [-1, 1], (N, H, W[, C])."""
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return pipeline.to_float(arrays.check_images(images)[0])
  if images.ndim == 3:
    images = images[..., None]
  if (images.dtype.kind != "f" or images.ndim != 4 or images.size == 0 or images.min() < -1.0 - 1e-3
      or images.max() > 1.0 + 1e-3):
    raise ValueError(f"images must be uint8 in [0, 255] or float in [-1, 1], shaped (N, H, W[, C]); got "
                     f"{images.dtype} {images.shape}")
  return images.astype(np.float32)


def _eval_config(config, images: np.ndarray) -> ml_collections.ConfigDict:
  if config is not None:
    return config
  c = config_lib.base_config()
  c.model.update(image_size=images.shape[1], channels=images.shape[3])
  return c


def fid(images_a, images_b, features: Callable | None = None, config=None) -> float:
  """Fréchet distance (Heusel et al. 2017) between two image sets' feature Gaussians:
  |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)).

  Images: uint8 [0, 255] or float [-1, 1], (N, H, W, C). Features: `features(images) ->
  (N, d)` if given, else the domain classifier of `config`'s dataset (default: the
  Fashion-MNIST classifier at the images' size), trained once and cached."""
  a, b = _float_images(images_a), _float_images(images_b)
  if features is None:
    extractor, _ = evaluate_lib.reference(_eval_config(config, a))
    features = lambda x: extractor.logits_and_features(x)[1]
  return metrics.fid(np.asarray(features(a)), np.asarray(features(b)))


def evaluate(source, config=None, num: int = 10000, teacher_dir: str = "") -> dict:
  """FID, KID, precision/recall, density/coverage, classifier score of `source` against the
  real eval split of `config`'s dataset. `source`: a workdir (what `gandistill eval` does:
  also fidelity to the teacher and efficiency, written to eval.json), a generator
  `z -> images` (e.g. load_generator's; `num` samples on the evaluation's fixed z), or
  images (uint8 or float in [-1, 1])."""
  if isinstance(source, (str, os.PathLike)):
    return evaluate_lib.evaluate_workdir(str(source), teacher_dir, num=num)
  if callable(source):
    latent_dim = getattr(source, "latent_dim", None) or (config.model.latent_dim if config else None)
    if latent_dim is None:
      raise ValueError("a generator without a latent_dim attribute needs config.model.latent_dim")
    z = evaluate_lib.latents(latent_dim, num)
    images = np.concatenate([np.asarray(source(z[i:i + 500])) for i in range(0, num, 500)])
  else:
    images = source
  images = _float_images(images)
  extractor, real = evaluate_lib.reference(_eval_config(config, images))
  return evaluate_lib.quality(extractor, real, images, extractor.model.num_classes)
