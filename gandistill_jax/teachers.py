"""Where a distillation's teacher comes from, and what it offers the objectives.

A teacher is whatever maps z ~ N(0, I) to images in [-1, 1]. Four sources:

    workdir   a run this package trained, or a PyTorch DCGAN converted into one
              (gandistill_jax.torch_convert): its architecture (`config.teacher_model`)
              and weights travel in the student's checkpoints, so every objective works:
              its intermediate activations (gfeat), its discriminator if it has one
              (dfeat, GCC and MMD on the teacher's D, d_init='teacher') and cutting the
              student from it (student_init='teacher').
    exported  a `.jaxexport` file (`gandistill export`): a StableHLO program z -> images
              that runs inside the jitted step. Images only.
    function  (library only) any JAX-traceable function z -> images, e.g. your own
              generator's `lambda z: model.apply(variables, z)`. Images only; a resumed run
              is given the same function again.
    pairs     stored (z, G_t(z)) pairs from any framework (black box, TinyGAN's offline
              setting; `read_pairs` gives the format): the step reads them from the batch.

An objective that needs what a teacher lacks is refused in one line before any work
(`distill.validate`). The config records the teacher (`record`): distill.teacher_kind,
teacher_dir (its workdir or file), teacher_sha256 (of a file teacher, checked again on
resume), teacher_has_d, and for a workdir teacher its architecture as teacher_model.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import zipfile
from typing import Callable

import numpy as np

from gandistill_jax import files

KINDS = ("workdir", "exported", "function", "pairs")
_MAGIC_EXPORTED, _MAGIC_NPZ = b"GDJX", b"PK\x03\x04"


class TeacherError(ValueError):
  """A teacher that cannot teach this student as given."""


@dataclasses.dataclass(frozen=True)
class Teacher:
  """A resolved teacher. `variables` = {'g': ..., 'd': ... or None} and `model` for a
  workdir teacher; `fn` (traceable z -> images) for an exported or function teacher;
  `sha256` of a file teacher; `source` the workdir or file it came from."""
  kind: str
  latent_dim: int
  sample_shape: tuple[int, ...]
  source: str = ""
  model: object = None
  variables: dict | None = None
  fn: Callable | None = None
  sha256: str = ""
  num_pairs: int = 0

  @property
  def has_discriminator(self) -> bool:
    return self.variables is not None and self.variables.get("d") is not None

  def generator(self) -> Callable:
    """z -> images, traceable: the function, or a workdir teacher's EMA generator."""
    if self.fn is not None:
      return self.fn
    if self.kind == "workdir":
      from gandistill_jax import models
      gen, variables = models.build_generator(self.model), self.variables["g"]
      return lambda z: gen.apply(variables, z)
    raise TeacherError(f"{self.source} is stored (z, image) pairs: it cannot generate images for other z")


def read_pairs(path: str) -> tuple[np.ndarray, np.ndarray]:
  """(z float32 (N, d), images float32 (N, H, W, C) in [-1, 1]) from a pairs .npz.

  The format, for any framework: `z` float32 (N, d), the latents the teacher was given,
  drawn from N(0, I); `images` uint8 (N, H, W, C) in [0, 255] (x / 127.5 - 1), or float
  in [-1, 1] (what `gandistill dump-teacher` writes, lossless). Channels last. Files from
  older versions name the images `teacher`. Loaded without pickle."""
  try:
    with np.load(path, allow_pickle=False) as f:
      names = set(f.files)
      key = "images" if "images" in names else "teacher" if "teacher" in names else None
      if "z" not in names or key is None:
        raise TeacherError(f"{path}: a pairs file holds arrays 'z' and 'images'; this one has {sorted(names)}")
      z, images = f["z"], f[key]
  except TeacherError:
    raise
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:   # zip, npy and pickle refusals
    raise TeacherError(f"{path}: not a pairs .npz, or truncated or corrupt ({type(e).__name__}: "
                       f"{' '.join(str(e).split())[:100]})") from None
  if z.ndim != 2 or z.dtype.kind != "f" or not len(z) or not z.shape[1] or not np.all(np.isfinite(z)):
    raise TeacherError(f"{path}: 'z' must be finite float32 (N, latent_dim) with N > 0; got {z.dtype} {z.shape}")
  if z.size >= 1000 and not (abs(float(z.mean())) < 0.5 and 0.5 < float(z.std()) < 2.0):
    raise TeacherError(f"{path}: 'z' must be draws from N(0, I), as the student's z are; these have mean "
                       f"{float(z.mean()):.3g} and standard deviation {float(z.std()):.3g}")
  if images.ndim != 4 or len(images) != len(z):
    raise TeacherError(f"{path}: 'images' must be (N, H, W, C) with N = {len(z)} (as 'z'); got {images.shape}")
  if images.dtype == np.uint8:
    return z.astype(np.float32), images.astype(np.float32) / 127.5 - 1.0
  if images.dtype.kind != "f" or not np.all(np.isfinite(images)) or np.abs(images).max() > 1.0 + 1e-3:
    raise TeacherError(f"{path}: 'images' must be uint8 in [0, 255] or float in [-1, 1]; got {images.dtype} "
                       f"in [{images.min()}, {images.max()}]")
  if images.min() >= 0.0:   # [0, 1] floats (ToTensor's range) read as [-1, 1] would be a washed-out teacher
    print(f"gandistill: warning: {path}: every float image value is in [0, 1]; the format's float images are in "
          f"[-1, 1] (x * 2 - 1 from [0, 1]); reading them as given", file=sys.stderr, flush=True)
  return z.astype(np.float32), np.clip(images, -1.0, 1.0).astype(np.float32)


def article(kind: str) -> str:
  """'an exported', 'a workdir': the kind with its article, for messages."""
  return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _file_kind(path: str) -> str:
  with open(path, "rb") as f:
    magic = f.read(8)
  if magic[:4] == _MAGIC_EXPORTED:
    return "exported"
  if magic[:4] == _MAGIC_NPZ:
    return "pairs"
  if magic[4:] == b"TFL3":
    raise TeacherError(f"{path} is TensorFlow Lite, which cannot run inside a JAX program; give the teacher's "
                       f"workdir or its .jaxexport")
  raise TeacherError(f"{path}: not a teacher: give a teacher's workdir, an exported generator (.jaxexport, from "
                     f"`gandistill export`) or a pairs .npz (z, images)")


def from_function(fn: Callable, latent_dim: int | None = None) -> Teacher:
  """A teacher from a JAX-traceable function z (B, d) -> images (B, H, W, C) in [-1, 1];
  d from `latent_dim` or the function's `latent_dim` attribute. A generator from
  `gandistill_jax.load_generator` (a workdir's or a .jaxexport's) gives its traceable `fn`."""
  import jax
  import jax.numpy as jnp
  from gandistill_jax import export
  latent_dim = latent_dim or getattr(fn, "latent_dim", None)
  if isinstance(fn, export.LoadedGenerator):
    fn = fn.fn
  if not isinstance(latent_dim, int) or latent_dim < 1:
    raise TeacherError("a teacher function needs its latent size: give it a `latent_dim` attribute or pass "
                       "latent_dim=")
  try:
    out = jax.eval_shape(fn, jax.ShapeDtypeStruct((2, latent_dim), jnp.float32))
  except Exception as e:
    raise TeacherError(f"the teacher function must be traceable by JAX (jnp operations, z -> images); tracing it "
                       f"on z of shape (2, {latent_dim}) raised {type(e).__name__}: "
                       f"{' '.join(str(e).split())[:160]}") from None
  if not hasattr(out, "shape") or len(out.shape) != 4 or out.shape[0] != 2:
    raise TeacherError(f"the teacher function must map z (B, {latent_dim}) to images (B, H, W, C); it returns "
                       f"{getattr(out, 'shape', type(out).__name__)}")
  return Teacher("function", latent_dim, tuple(out.shape[1:]), fn=fn)


def resolve(teacher, config=None) -> Teacher:
  """The Teacher for what a user gives: a workdir path, an exported file, a pairs .npz, a
  Teacher, or a JAX function z -> images. `config` (the student's run config) is needed
  for a workdir teacher (whose data and latent spec are checked against it)."""
  if isinstance(teacher, Teacher):
    return teacher
  if callable(teacher) and not isinstance(teacher, (str, os.PathLike)):
    return from_function(teacher)
  path = os.fspath(teacher)
  if os.path.isdir(path):
    from gandistill_jax import models, workdir as workdir_lib
    model, variables = workdir_lib.load_teacher(path, config)
    return Teacher("workdir", model.latent_dim, models.sample_shape(model), os.path.abspath(path), model=model,
                   variables=variables)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no such workdir or file")
  if not os.path.isfile(path):
    raise TeacherError(f"{path}: not a workdir or a regular file")
  kind = _file_kind(path)
  source, sha256 = os.path.abspath(path), files.sha256(path)
  if kind == "pairs":
    z, images = read_pairs(path)
    return Teacher("pairs", z.shape[1], tuple(images.shape[1:]), source, sha256=sha256, num_pairs=len(z))
  from gandistill_jax import export
  loaded = export.load_exported(path)
  return Teacher("exported", loaded.latent_dim, tuple(loaded.sample_shape), source, fn=loaded.fn, sha256=sha256)


def check_fits(teacher: Teacher, config) -> None:
  """The teacher's latent size and image shape are the student's (config.model)."""
  from gandistill_jax import models
  want = (config.model.latent_dim, models.sample_shape(config.model))
  got = (teacher.latent_dim, tuple(teacher.sample_shape))
  if got != want:
    raise TeacherError(f"the teacher ({teacher.source}) maps z of size {got[0]} to images {got[1]}, but the student "
                       f"config has latent_dim {want[0]} and images {want[1]}; they must match (set model.latent_dim, "
                       f"model.image_size and model.channels)")


def record(config, teacher: Teacher) -> None:
  """Writes into `config` (in place) what the run records of its teacher (module docstring).
  A pairs teacher makes the run offline, reading `distill.offline_path`."""
  import ml_collections
  check_fits(teacher, config)
  dc = config.distill
  dc.teacher_kind, dc.teacher_dir, dc.teacher_sha256 = teacher.kind, teacher.source, teacher.sha256
  dc.teacher_has_d = teacher.has_discriminator
  if teacher.kind == "workdir":
    config.teacher_model = ml_collections.ConfigDict(teacher.model.to_dict())
  elif "teacher_model" in config:
    del config["teacher_model"]
  if teacher.kind == "pairs":
    if dc.offline_path and not files.same_file(dc.offline_path, teacher.source):
      raise TeacherError(f"distill.offline_path={dc.offline_path} is not the pairs file given ({teacher.source})")
    dc.mode, dc.offline_path = "offline", teacher.source
  elif dc.mode == "offline" and not dc.offline_path:
    raise TeacherError("distill.mode='offline' reads stored pairs: give them (`--pairs FILE`, or "
                       "distill.offline_path)")
  if dc.mode == "offline":   # the pairs the run reads: the teacher itself, or another's stored samples
    pairs = teacher if teacher.kind == "pairs" else resolve(dc.offline_path)
    if pairs.kind != "pairs":
      raise TeacherError(f"distill.offline_path={dc.offline_path} is not a pairs .npz")
    check_fits(pairs, config)
    if pairs.num_pairs < config.train.batch_size:
      raise TeacherError(f"{pairs.source}: {pairs.num_pairs} pairs cannot fill a batch of {config.train.batch_size} "
                         f"(train.batch_size); store more pairs")


def check_same(teacher: Teacher, config, workdir: str) -> None:
  """A resumed run's teacher is the one it started with (`config`: the run's saved config):
  the same workdir, or a file with the same contents (its SHA-256)."""
  dc = config.distill
  recorded = dc.teacher_dir or "a function"
  again = (f"give {'--pairs' if dc.teacher_kind == 'pairs' else '--teacher'} {dc.teacher_dir} to resume"
           if dc.teacher_dir else "pass the same function to resume")
  if dc.teacher_kind != teacher.kind or (teacher.kind == "workdir" and not files.same_file(dc.teacher_dir,
                                                                                           teacher.source)):
    raise TeacherError(f"{workdir} distils from {recorded} ({article(dc.teacher_kind)} teacher, its config.json records); "
                       f"{teacher.source} is another teacher: {again}, or use a new --workdir")
  if teacher.sha256 != dc.teacher_sha256:
    raise TeacherError(f"{teacher.source} is not the file {workdir} started from (its SHA-256 {teacher.sha256[:12]} "
                       f"differs from the recorded {dc.teacher_sha256[:12]}); give the same file to resume, or use "
                       f"a new --workdir")


def file_unchanged(config) -> bool:
  """Whether a distill run's file teacher (exported or pairs) is still at its recorded path
  with its recorded SHA-256: then it can be read again without the caller."""
  dc = config.distill
  return (dc.teacher_kind in ("exported", "pairs") and os.path.isfile(dc.teacher_dir)
          and files.sha256(dc.teacher_dir) == dc.teacher_sha256)


def attach(config, teacher, workdir: str):
  """(a copy of the distill `config` recording `teacher`, the resolved Teacher): what every
  distillation does before training in `workdir` (the command line, the library, studies).
  A workdir that already holds a distill run must be given the teacher it started from."""
  import ml_collections
  from gandistill_jax import config as config_lib, workdir as workdir_lib
  config = config_lib.upgrade(ml_collections.ConfigDict(config.to_dict()))
  if "distill" not in config:
    raise ValueError("the config has no 'distill' section; add gandistill_jax.config.default_distill_config()")
  teacher = resolve(teacher, config)
  if os.path.isfile(os.path.join(workdir, "config.json")):
    saved = workdir_lib.load_config(workdir)
    if "distill" in saved:
      check_same(teacher, saved, workdir)
  record(config, teacher)
  return config, teacher
