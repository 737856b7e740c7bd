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

# Each call imports what it needs: importing this module costs neither jax's start-up nor
# TensorFlow's (which only tf.data/TFDS sources use), and sets nothing process-wide.


def _train_gan(config, workdir: str, kind: str, data, progress: bool, allow_data_change: bool):
  from gandistill_jax import loop, tasks
  return loop.train(config, workdir, tasks.gan_task(config, kind), progress=progress, data=data,
                    allow_data_change=allow_data_change)


def train_teacher(config: ml_collections.ConfigDict, workdir: str, data=None, progress: bool = True,
                  allow_data_change: bool = False):
  """Trains (or resumes) the GAN `config.model` adversarially in `workdir`; returns the
  final state. `data`: own images instead of `config.data` (loop.train)."""
  return _train_gan(config, workdir, "teacher", data, progress, allow_data_change)


def train_scratch(config: ml_collections.ConfigDict, workdir: str, data=None, progress: bool = True,
                  allow_data_change: bool = False):
  """The baseline: a student-size `config.model` trained adversarially from scratch."""
  return _train_gan(config, workdir, "scratch", data, progress, allow_data_change)


def distill_student(config: ml_collections.ConfigDict, teacher, workdir: str,
                    extra_terms: Sequence = (), data=None, progress: bool = True, allow_data_change: bool = False):
  """Distills `teacher` into the student `config.model` (`gandistill distill`; not named
  `distill`, which is the module gandistill_jax.distill). Returns the final state.

  `teacher` (gandistill_jax.teachers): a teacher's workdir (this package's run, or a
  converted PyTorch generator), an exported generator file (.jaxexport), a pairs .npz
  (z float32 (N, d), images uint8 (N, H, W, C): a black box, distilled offline), or any
  JAX function z -> images with a `latent_dim` attribute (e.g. `gd.load_generator(...)` of
  a workdir or .jaxexport, or `lambda z: model.apply(variables, z)` with the attribute set). Objectives that need
  more than images (the teacher's activations or discriminator) need a workdir teacher.

  `config` needs a `distill` section (config.default_distill_config()); what the run
  records of its teacher is written into it (teachers.record). `extra_terms`
  (objectives.Term) are added to the configured ones (give the same ones to resume)."""
  from gandistill_jax import distill as distill_lib, loop, teachers
  if callable(teacher) and not isinstance(teacher, teachers.Teacher):
    teacher = teachers.from_function(teacher, getattr(teacher, "latent_dim", None) or config.model.latent_dim)
  config, teacher = teachers.attach(config, teacher, workdir)
  task = distill_lib.distill_task(config, teacher, extra_terms)
  return loop.train(config, workdir, task, progress=progress, data=data, allow_data_change=allow_data_change)


def _float_images(images) -> np.ndarray:
  """float32 (N, H, W, C) in [-1, 1] from uint8 [0, 255] or float [-1, 1], (N, H, W[, C])."""
  from gandistill_jax.data import arrays
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return arrays.to_float(arrays.check_images(images)[0])
  if images.ndim == 3:
    images = images[..., None]
  if (images.dtype.kind != "f" or images.ndim != 4 or images.size == 0 or images.min() < -1.0 - 1e-3
      or images.max() > 1.0 + 1e-3):
    raise ValueError(f"images must be uint8 in [0, 255] or float in [-1, 1], shaped (N, H, W[, C]); got "
                     f"{images.dtype} {images.shape}")
  return images.astype(np.float32)


def _scorer(config, data, like: np.ndarray):
  """The Scorer for `data` (the caller's reference images) or `config`'s data at the size of
  `like`; with neither, one line saying what to pass (never a default dataset)."""
  from gandistill_jax import config as config_lib
  from gandistill_jax.eval import evaluate as evaluate_lib
  size, channels = like.shape[1], like.shape[3]
  if data is not None:
    return evaluate_lib.scorer(evaluate_lib.reference_from_arrays(data, size, channels),
                               config_lib.cache_dir(config if config is not None else config_lib.base_config()))
  if config is None:
    raise ValueError("no reference data: pass data=(images, labels) (your real images) or config= (whose "
                     "data.* names them), or features=fn for gd.fid")
  config = ml_collections.ConfigDict(config.to_dict())
  config.model.update(image_size=size, channels=channels)
  return evaluate_lib.reference(config)


def fid(images_a, images_b, features: Callable | None = None, config=None, data=None) -> float:
  """Fréchet distance (Heusel et al. 2017) between two image sets' feature Gaussians:
  |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)).

  Images: uint8 [0, 255] or float [-1, 1], (N, H, W, C). Features: `features(images) ->
  (N, d)` if given, else the domain classifier of the data given as `data` (the caller's
  labelled images) or named by `config.data` (the shipped network for data it was built
  for, e.g. Fashion-MNIST, else one trained on the data's labels and cached by its digest)."""
  from gandistill_jax.eval import metrics
  a, b = _float_images(images_a), _float_images(images_b)
  if features is None:
    extractor = _scorer(config, data, a).extractor
    features = lambda x: extractor.logits_and_features(x)[1]
  return metrics.fid(np.asarray(features(a)), np.asarray(features(b)))


def evaluate(source, config=None, num: int = 10000, teacher_dir: str = "", data=None,
             overrides: Sequence[str] = ()) -> dict:
  """FID, KID, precision/recall, density/coverage, classifier score of `source`, with the
  protocol that reproduces them (eval.json's `protocol`).

  `source`: a workdir (what `gandistill eval` does: scored against the data the run read,
  as its data.json records, plus fidelity to the teacher and efficiency, written to
  eval.json), a generator `z -> images` (e.g. load_generator's; `num` samples on the
  evaluation's fixed z), or images (uint8 or float in [-1, 1]). Other reference data are an
  explicit choice: `data` (your real images, optionally with labels, in any form `data=`
  takes for training) or, for images and generators, `config` (its data.*); for a workdir,
  `overrides` ('data.path=...', eval.* keys)."""
  from gandistill_jax.eval import evaluate as evaluate_lib
  if isinstance(source, (str, os.PathLike)):
    if config is not None:
      raise ValueError("config= does not apply to a workdir, which is scored against the data it recorded; to "
                       "score it against other data pass data=(images, labels) or overrides=['data.path=...']")
    return evaluate_lib.evaluate_workdir(str(source), teacher_dir, num=num, overrides=overrides, data=data)
  if num < 1:
    raise ValueError(f"num={num}: evaluation needs at least 1 sample")
  seed = None
  if callable(source):
    latent_dim = getattr(source, "latent_dim", None) or (config.model.latent_dim if config else None)
    if latent_dim is None:
      raise ValueError("a generator without a latent_dim attribute needs config.model.latent_dim")
    z, seed = evaluate_lib.latents(latent_dim, num), evaluate_lib.EVAL_SEED
    images = np.concatenate([np.asarray(source(z[i:i + 500])) for i in range(0, num, 500)])
  else:
    images = source
  images = _float_images(images)
  return _scorer(config, data, images).quality(images, latent_seed=seed)
