"""Deployable generators: one file with the StableHLO of G (weights inside) and its spec.

`gandistill export` serialises z -> G(z) with `jax.export`, with a symbolic batch
dimension, lowered for CPU, CUDA and TPU. The file is

    b"GDJX" | version (1 byte) | header length (4 bytes, big-endian) | JSON header | payload

where the header gives the input spec (latent size), the output shape and value range,
the platforms, the payload's length, and a SHA-256 over the header's other fields and the
payload, so a corrupt, truncated or edited file is refused before deserialisation
(version 1 files, whose checksum covers the payload only, are still read). Loading needs
only jax (and numpy). Weights that are not finite are never exported.

The checksum catches accidents (a bad disk, a cut download, an edit by hand), not intent:
anyone who edits a file can compute its checksum again. It is not a signature; trust an
exported file as much as where it came from. Loading one runs no Python code from it (the
payload is a StableHLO program, deserialised without pickle), and its header is checked
field by field and against the program's input and output shapes.

Before export, a DCGAN-family generator is put in its inference form (`inference_form`):
batch norm folded into the preceding layers (models.dcgan.fold_batch_norm), and, chosen
by timing each candidate at batch 256 on the exporting device, whether the low-rank
projection is multiplied out and which of the identical upsampling computations each
layer uses (models.layers.UPSAMPLE_METHODS). The choices are recorded in the header; the
outputs equal the trained generator's (checked at export, at highest matmul precision).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from gandistill_jax import files, parallel

MAGIC, VERSION = b"GDJX", 2
PLATFORMS = ("cpu", "cuda", "tpu")


class ArtifactError(ValueError):
  """An exported generator file that cannot be used as given."""


@dataclasses.dataclass
class LoadedGenerator:
  """A generator ready to sample: call it with z of shape (B, latent_dim)."""
  fn: Callable
  latent_dim: int
  sample_shape: tuple
  source: str

  def __call__(self, z, uint8: bool = False) -> np.ndarray:
    """Images for z (batch, latent_dim): float32 in [-1, 1], or uint8 in [0, 255]."""
    z = np.asarray(z, np.float32)
    if z.ndim != 2 or z.shape[1] != self.latent_dim:
      raise ValueError(f"z has shape {z.shape}; this generator takes (batch, {self.latent_dim})")
    out = np.asarray(self.fn(z))
    if uint8:
      return np.clip(np.round((out + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return out


def workdir_generator_variables(workdir: str, which: str = "auto"):
  """(generator module, its variables, config) from a workdir's newest intact checkpoint.

  which: 'auto'/'ema'/'student' = the deployable weights (EMA with recomputed batch
  statistics), 'teacher' = a distill run's frozen teacher (both read without the trainer,
  workdir.restore_network), 'live' = the raw trained weights (from the whole train state).
  """
  from gandistill_jax import workdir as workdir_lib   # orbax and flax: not for loading an exported file
  if which in ("auto", "ema", "student", "teacher"):
    gen, variables, config, _ = workdir_lib.restore_network(workdir, "teacher" if which == "teacher" else "generator")
    return gen, variables, config
  if which == "live":
    from gandistill_jax import distill, tasks   # the live weights are in the train state only
    config = workdir_lib.load_config(workdir)
    task = distill.distill_task(config) if "distill" in config else tasks.gan_task(config)
    state, _, _ = workdir_lib.restore_latest(task, workdir, parallel.make_mesh())   # global arrays, in every process
    if hasattr(state, "g_params"):
      return task.generator, parallel.to_host({"params": state.g_params, "batch_stats": state.g_stats}), config
    return task.generator, parallel.to_host({"params": state.s_params["generator"], "batch_stats": state.s_stats}), config
  raise ValueError(f"--which {which!r} is unknown; use auto, ema, live, teacher or student")


def inference_form(gen, variables, latent_dim: int, batch: int = 256, repeats: int = 5, margin: float = 0.03,
                   tol: float = 1e-4):
  """(generator, variables, choices): the fastest identical form of a DCGAN generator for sampling.

  Batch norm is folded; then, one decision at a time (greedy), the projection is fused or
  not and each UpConv switched to another upsampling method. A change is kept only if it
  is at least `margin` faster: the current and the changed form are timed alternately,
  `repeats` times each (runs of back-to-back batch-`batch` calls on the default device), and
  their medians compared, so that drift of a noisy machine hits both alike. Other families
  are returned unchanged (choices None). Raises if the form's outputs differ from the
  original's by more than `tol` at highest matmul precision.
  """
  from gandistill_jax.eval.efficiency import THROUGHPUT_SECONDS, time_call
  from gandistill_jax.models import dcgan, layers
  if not (isinstance(gen, dcgan.Generator) and gen.batch_norm):
    return gen, variables, None
  z = jax.random.normal(jax.random.key(0), (batch, latent_dim), jnp.float32)
  n = len(dcgan.stage_channels(gen.width, gen.image_size, gen.num_up))
  def build(fuse: bool, methods: tuple):
    g, v = dcgan.fold_batch_norm(gen, variables, fuse_projection=fuse)
    return g.clone(upsample=methods), v
  compiled = {}
  def fn(choice):
    if choice not in compiled:
      g, v = build(*choice)
      compiled[choice] = jax.jit(lambda z: g.apply(v, z))
    return compiled[choice]
  def faster(trial, best) -> bool:
    times = {trial: [], best: []}
    for _ in range(repeats):
      for choice in (best, trial):   # half the usual run length: export stays quick
        times[choice] += time_call(fn(choice), z, 1, warmup=1, min_seconds=THROUGHPUT_SECONDS / 2)
    return np.median(times[trial]) < (1 - margin) * np.median(times[best])
  best = (False, ("phase",) * n)
  candidates = [lambda c: (True, c[1])] if gen.proj_rank else []
  other = [m for m in layers.UPSAMPLE_METHODS if m != "phase"]
  for i in range(n):
    candidates += [lambda c, i=i, m=m: (c[0], c[1][:i] + (m,) + c[1][i + 1:]) for m in other]
  for change in candidates:
    trial = change(best)
    if faster(trial, best):
      best = trial
  g, v = build(*best)
  with jax.default_matmul_precision("highest"):
    err = float(jnp.max(jnp.abs(g.apply(v, z[:16]) - gen.apply(variables, z[:16]))))
  if not err <= tol:
    raise ArtifactError(f"the inference form differs from the trained generator by {err:.2e} (> {tol}); "
                        f"export with optimize=False")
  return g, v, {"folded_batch_norm": True, "fused_projection": best[0], "upsample": list(best[1]),
                "max_abs_difference": err}


def export_generator(gen, variables, latent_dim: int, sample_shape: tuple, path: str, extra: dict | None = None,
                     platforms: tuple[str, ...] = PLATFORMS, optimize: bool = True) -> dict:
  """Writes z -> gen.apply(variables, z) with a symbolic batch to `path`; returns the header.
  With `optimize`, the generator is first put in its `inference_form` (same outputs)."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(variables)
  bad = [jax.tree_util.keystr(p) for p, x in leaves if not np.all(np.isfinite(np.asarray(x)))]
  if bad:
    raise ArtifactError(f"the generator has non-finite weights ({bad[0]}); nothing exported to {path}")
  form = None
  if optimize:
    gen, variables, form = inference_form(gen, variables, latent_dim)
  (batch,) = jax.export.symbolic_shape("b")
  fn = jax.jit(lambda z: gen.apply(variables, z))
  exported = jax.export.export(fn, platforms=platforms)(jax.ShapeDtypeStruct((batch, latent_dim), jnp.float32))
  payload = bytes(exported.serialize())
  header = {"format": "gandistill_jax exported generator", "latent_dim": latent_dim,
            "output_shape": list(sample_shape), "value_range": [-1.0, 1.0], "latent_distribution": "N(0, I)",
            "platforms": list(exported.platforms), "jax_version": jax.__version__,
            "payload_bytes": len(payload), "inference_form": form, **(extra or {})}
  header["sha256"] = _digest(header, payload)
  raw = json.dumps(header).encode()
  files.write_atomic(path, lambda f: f.write(MAGIC + bytes([VERSION]) + struct.pack(">I", len(raw)) + raw + payload),
                     mode="wb")
  return header


def _digest(header: dict, payload: bytes) -> str:
  """SHA-256 over the header (without this field, keys sorted) and the payload."""
  fields = {k: v for k, v in header.items() if k != "sha256"}
  return hashlib.sha256(json.dumps(fields, sort_keys=True).encode() + payload).hexdigest()


def read_artifact(path: str) -> tuple[dict, bytes]:
  """(header, payload) of an exported file, verified; ArtifactError says what is wrong."""
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise ArtifactError(f"{path}: cannot read ({e.strerror})") from None
  if data[:4] != MAGIC:
    raise ArtifactError(f"{path}: not a gandistill exported generator (bad magic bytes); "
                        f"make one with `gandistill export`")
  if len(data) < 9:
    raise ArtifactError(f"{path}: truncated ({len(data)} bytes, shorter than the file's fixed start)")
  if data[4] not in (1, VERSION):
    raise ArtifactError(f"{path}: unsupported format version {data[4]} (this gandistill_jax reads versions 1 to "
                        f"{VERSION}); export it again with this version")
  (n,) = struct.unpack(">I", data[5:9])
  try:
    header = json.loads(data[9:9 + n])
  except (ValueError, UnicodeDecodeError):
    raise ArtifactError(f"{path}: corrupt or truncated header") from None
  payload = data[9 + n:]
  if not isinstance(header, dict) or len(payload) != header.get("payload_bytes"):
    raise ArtifactError(f"{path}: truncated or corrupt ({len(payload)} payload bytes, header says "
                        f"{header.get('payload_bytes') if isinstance(header, dict) else '?'})")
  ok = (hashlib.sha256(payload).hexdigest() == header.get("payload_sha256") if data[4] == 1
        else _digest(header, payload) == header.get("sha256"))
  if not ok:
    raise ArtifactError(f"{path}: corrupt or edited (checksum mismatch over the header and payload)")
  _check_header(path, header)
  return header, payload


def _check_header(path: str, header: dict) -> None:
  """The fields a loader uses, with their types: an edited header with a recomputed
  checksum is refused here, not by a KeyError deep in loading."""
  def positive_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v > 0
  checks = {"latent_dim": positive_int,
            "output_shape": lambda v: isinstance(v, list) and 0 < len(v) <= 4 and all(map(positive_int, v)),
            "platforms": lambda v: isinstance(v, list) and bool(v) and all(isinstance(p, str) for p in v)}
  for key, ok in checks.items():
    if not ok(header.get(key)):
      raise ArtifactError(f"{path}: bad header field {key}={header.get(key)!r}; export it again")


def load_exported(path: str) -> LoadedGenerator:
  header, payload = read_artifact(path)
  platform = jax.devices()[0].platform
  if platform not in header["platforms"]:
    raise ArtifactError(f"{path} was exported for {header['platforms']}, not for this {platform} device; "
                        f"export again on or for {platform}")
  try:
    exported = jax.export.deserialize(bytearray(payload))
  except Exception as e:   # a payload that passed its checksum yet does not parse: written so, or edited
    raise ArtifactError(f"{path}: the payload is not a jax.export program ({type(e).__name__}); export it "
                        f"again") from None
  want = ((None, header["latent_dim"]), (None, *header["output_shape"]))
  got = tuple(tuple(None if not isinstance(d, int) else d for d in a.shape) for a in (*exported.in_avals,
                                                                                       *exported.out_avals))
  if got != want:
    raise ArtifactError(f"{path}: the program maps {got[0]} -> {got[1:]} but the header says {want[0]} -> "
                        f"{want[1]}; export it again")
  return LoadedGenerator(jax.jit(exported.call), header["latent_dim"], tuple(header["output_shape"]), path)


def load_generator(path: str, which: str = "auto") -> LoadedGenerator:
  """A callable z -> images (float32 in [-1, 1], or uint8) from an exported file (this
  module's format, or a TFLite flatbuffer, told apart by its identifier) or a workdir."""
  if os.path.isfile(path):
    from gandistill_jax import tflite   # imports TensorFlow only to load a TFLite file
    return tflite.load_tflite(path) if tflite.is_tflite(path) else load_exported(path)
  if not os.path.isdir(path):
    raise FileNotFoundError(f"{path}: no such exported file or workdir")
  from gandistill_jax import models
  gen, variables, config = workdir_generator_variables(path, which)
  fn = jax.jit(lambda z: gen.apply(variables, z))
  return LoadedGenerator(fn, config.model.latent_dim, models.sample_shape(_model_config(config, which)), path)


def _model_config(config, which: str):
  if which == "teacher":
    return config.teacher_model
  return config.model


def export_workdir(workdir: str, out: str, which: str = "auto", optimize: bool = True) -> dict:
  """Exports a workdir's generator (EMA weights by default) to `out`, in its inference form
  unless `optimize=False`."""
  from gandistill_jax import models
  gen, variables, config = workdir_generator_variables(workdir, which)
  model_cfg = _model_config(config, which)
  return export_generator(gen, variables, config.model.latent_dim, models.sample_shape(model_cfg), out,
                          {"which": which, "workdir": os.path.basename(os.path.normpath(workdir)),
                           "params": models.param_count(variables["params"])}, optimize=optimize)
