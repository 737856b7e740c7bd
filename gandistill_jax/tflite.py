"""Generators as TensorFlow Lite flatbuffers: z -> images for phones and small CPUs.

Route. `jax2tf.convert` wraps z -> G(z) (weights as constants) in a TF function; in this
jax release it can only serialise natively, as one XlaCallModule op holding the StableHLO
program, and `tf.lite.TFLiteConverter` legalises that StableHLO to TFLite builtin ops
(FULLY_CONNECTED, CONV_2D, TRANSPOSE_CONV, ...; no TF or Flex ops, so the plain TFLite
runtime runs the file). The file is an ordinary `.tflite` (flatbuffer identifier b"TFL3")
with one input, z (batch, latent_dim) float32 from N(0, I), and one output, the samples
(batch, *sample_shape) float32 in [-1, 1].

Batch. By default the batch dimension is dynamic (shape signature -1): a reader resizes
the input (`resize_tensor_input`) to any batch. The converter has no lowering for a gather
whose shape depends on the batch, which JAX emits for a slice or nearest-neighbour
resize of a symbolic-batch array: the DCGAN phase and im2col upsampling forms (their
one-pixel crop) and the ResNet family's upsampling. So a DCGAN generator is exported with
every UpConv in its "dilated" form (the textbook transposed convolution, which becomes
TRANSPOSE_CONV), and a ResNet generator needs `batch=B`: a fixed batch, where every
shape is static and the DCGAN form is "phase" (at batch 256 on 2 shared x86 cores it ran
1.1-1.8x the samples/s of the dynamic form, results/tflite/bench.md); a reader runs any
batch as padded chunks of B.

Weights. "float32" keeps them as trained (batch norm folded into the preceding layers for
DCGAN generators, dcgan.fold_batch_norm: the same outputs). "int8" is TFLite's
dynamic-range quantisation (Optimize.DEFAULT, no representative data set): every weight
tensor of 1024 or more elements is stored as int8 with a float scale (per output channel
for convolutions), a quarter of its float32 size; at run time each such layer quantises its input to
int8 per sample on the fly (TFLite's hybrid kernels, XNNPACK's dynamically quantised ones),
so a sample does not depend on the others in its batch, and the outputs move by the
quantisation error (measured and recorded at export). Smaller weight tensors, biases and
the activations between layers stay float32.

Spec. The input and output shapes carry the spec, so any TFLite file of that form loads;
a file written here also holds, as flatbuffer metadata named "gandistill_jax", a JSON
header (latent size and distribution, output shape and value range, weights, batch, the
inference form, the largest difference to the JAX generator measured at export) and a
SHA-256 over the model's buffers (the weights), so that edited or corrupted weights are
refused at load like a corrupt `.jaxexport` (the flatbuffer verifier catches broken
structure, not changed numbers).

TensorFlow is imported only when converting or loading, with the GPUs hidden from it (as
the data pipeline does): a TFLite file runs on the CPU interpreter.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from gandistill_jax import export, files

IDENTIFIER = b"TFL3"
METADATA_NAME = "gandistill_jax"
WEIGHTS = ("float32", "int8")
INT8_MIN_ELEMENTS = 1024   # TFLite's dynamic-range quantisation leaves smaller weight tensors in float32
CHECK_BATCH = 16           # rows of the fixed z on which export measures the difference to JAX


def _tf():
  """tensorflow, imported here (never at module import) with the GPUs hidden from it."""
  import tensorflow as tf
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:   # already initialised
    pass
  return tf


def is_tflite(path: str) -> bool:
  """Whether `path` starts like a TFLite flatbuffer: identifier b"TFL3" at bytes 4..8."""
  try:
    with open(path, "rb") as f:
      return f.read(8)[4:8] == IDENTIFIER
  except OSError:
    return False


def tflite_form(gen, variables, batch: int | None):
  """(generator, variables, form): the same generator in the form that converts. A DCGAN
  generator has its batch norm folded, and every UpConv "dilated" for a dynamic batch (the
  only form without a batch-dependent gather) or "phase" for a fixed one (the faster form
  in TFLite here); other families are unchanged (form None)."""
  from gandistill_jax.models import dcgan, family
  if not isinstance(gen, dcgan.Generator):
    return gen, variables, None
  folded = gen.batch_norm
  if folded:
    gen, variables = dcgan.fold_batch_norm(gen, variables)
  method = "phase" if batch else "dilated"
  gen = gen.clone(upsample=(method,) * len(family.stage_channels(gen.width, gen.image_size, gen.num_up)))
  return gen, variables, {"folded_batch_norm": folded, "upsample": list(gen.upsample)}


@contextlib.contextmanager
def _stderr_silenced():
  """File descriptor 2 to /dev/null: the converter's MLIR diagnostics (each with its whole
  call stack, kilobytes per op) go there before it raises with the same messages."""
  saved = os.dup(2)
  try:
    with open(os.devnull, "w") as null:
      os.dup2(null.fileno(), 2)
      yield
  finally:
    os.dup2(saved, 2)
    os.close(saved)


def _converter_reason(error: Exception) -> str:
  """The converter's first error but its generic "failed while converting", with the source
  line it came from, e.g. "'vhlo.dynamic_gather_v1' op is not part of the vhlo support yet
  (resnet.py:52)"."""
  for file, line, message in re.findall(r"(?:([^\s:\"]+\.py):(\d+):\d+: )?error: ([^\n]+)", str(error)):
    if not message.startswith("failed while converting"):
      return message.strip().rstrip(".") + (f" ({os.path.basename(file)}:{line})" if file else "")
  lines = str(error).strip().splitlines()
  return lines[-1][:200] if lines else type(error).__name__


def convert(fn, latent_dim: int, batch: int | None, weights: str, path: str, what: str) -> bytes:
  """The TFLite flatbuffer of fn: z (batch, latent_dim) -> samples; batch None = dynamic.
  ArtifactError (one line, naming `path`) if TFLite cannot express it."""
  tf = _tf()
  from jax.experimental import jax2tf
  tf_fn = jax2tf.convert(fn, polymorphic_shapes=None if batch else ["(b, _)"], with_gradient=False,
                         native_serialization_platforms=("cpu",))
  tf_fn = tf.function(tf_fn, input_signature=[tf.TensorSpec((batch, latent_dim), tf.float32, name="z")],
                      autograph=False)
  converter = tf.lite.TFLiteConverter.from_concrete_functions([tf_fn.get_concrete_function()], tf_fn)
  if weights == "int8":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  try:
    with _stderr_silenced():
      return converter.convert()
  except Exception as e:   # the converter raises ConverterError, its own subclass of Exception
    shape = f"a fixed batch of {batch}" if batch else "a dynamic batch"
    hint = "" if batch else "; export it with a fixed batch (gandistill export --batch B, export_tflite(batch=B))"
    raise export.ArtifactError(f"{path}: TFLite cannot convert this {what} with {shape}: {_converter_reason(e)}"
                               f"{hint}; nothing exported") from None


def _buffers_digest(model, skip: int) -> str:
  """SHA-256 over the model's buffers (weights and constants) in order, but buffer `skip`
  (the one that holds this digest)."""
  h = hashlib.sha256()
  for i in range(model.BuffersLength()):
    if i != skip:
      data = model.Buffers(i).DataAsNumpy()
      h.update(np.int64(i).tobytes() + (data.tobytes() if isinstance(data, np.ndarray) else b""))
  return h.hexdigest()


def with_metadata(flatbuffer: bytes, header: dict) -> bytes:
  """`flatbuffer` with `header` (plus weights_sha256) as metadata METADATA_NAME."""
  import flatbuffers
  from tensorflow.lite.python import schema_py_generated as schema
  model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(flatbuffer, 0))
  skip = len(model.buffers)   # the header's buffer comes last
  header = {**header, "weights_sha256": _buffers_digest(schema.Model.GetRootAs(flatbuffer, 0), skip)}
  buffer = schema.BufferT()
  buffer.data = np.frombuffer(json.dumps(header).encode(), np.uint8)
  model.buffers.append(buffer)
  entry = schema.MetadataT()
  entry.name, entry.buffer = METADATA_NAME.encode(), skip
  model.metadata = (model.metadata or []) + [entry]
  builder = flatbuffers.Builder(len(flatbuffer) + 4096)
  builder.Finish(model.Pack(builder), file_identifier=IDENTIFIER)
  return bytes(builder.Output())


def read_metadata(path: str, flatbuffer: bytes) -> dict | None:
  """The header a file written here holds (its weights checked against their digest), or
  None for a TFLite file from elsewhere. Call on a buffer the interpreter has verified."""
  from tensorflow.lite.python import schema_py_generated as schema
  model = schema.Model.GetRootAs(flatbuffer, 0)
  for i in range(model.MetadataLength()):
    entry = model.Metadata(i)
    if entry.Name() == METADATA_NAME.encode():
      header = None
      if 0 <= entry.Buffer() < model.BuffersLength():
        raw = model.Buffers(entry.Buffer()).DataAsNumpy()
        try:
          header = json.loads(raw.tobytes()) if isinstance(raw, np.ndarray) else None
        except (ValueError, UnicodeDecodeError):
          pass
      if not isinstance(header, dict):
        raise export.ArtifactError(f"{path}: corrupt gandistill_jax metadata; export it again")
      if header.get("weights_sha256") != _buffers_digest(model, entry.Buffer()):
        raise export.ArtifactError(f"{path}: corrupt or edited (the weights do not match their SHA-256)")
      return header
  return None


def _interpreter(path: str, flatbuffer: bytes):
  tf = _tf()
  with warnings.catch_warnings():   # tf.lite.Interpreter's notice that LiteRT (ai_edge_litert) succeeds it
    warnings.simplefilter("ignore", UserWarning)
    try:
      with _stderr_silenced():   # the runtime's "INFO: Created TensorFlow Lite XNNPACK delegate" line
        interpreter = tf.lite.Interpreter(model_content=flatbuffer)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
      reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
      raise export.ArtifactError(f"{path}: not a valid TFLite model ({reason.rstrip('.')}); "
                                 f"truncated or corrupt?") from None
  return interpreter


def _runner(interpreter, latent_dim: int, batch: int | None):
  """fn(z) -> samples through `interpreter`: any number of rows, as one call with the input
  resized to them (dynamic batch) or as chunks of the fixed batch, the last one padded.
  Calls are serialised (an interpreter is not thread-safe)."""
  inp, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
  lock = threading.Lock()
  def invoke(z):
    if tuple(interpreter.get_input_details()[0]["shape"]) != z.shape:
      interpreter.resize_tensor_input(inp, z.shape, strict=True)
      interpreter.allocate_tensors()
    interpreter.set_tensor(inp, z)
    interpreter.invoke()
    return interpreter.get_tensor(out)
  def fn(z):
    z = np.asarray(z, np.float32)
    n = len(z)
    chunk = batch or max(n, 1)
    rows = -(-max(n, 1) // chunk) * chunk
    z = np.concatenate([z, np.zeros((rows - n, latent_dim), np.float32)])
    with lock:
      return np.concatenate([invoke(z[i:i + chunk]) for i in range(0, rows, chunk)])[:n]
  return fn


def _spec(path: str, interpreter) -> tuple[int, tuple, int | None]:
  """(latent_dim, sample_shape, fixed batch or None) from the model's one input and output."""
  ins, outs = interpreter.get_input_details(), interpreter.get_output_details()
  ok = (len(ins) == 1 and len(outs) == 1 and ins[0]["dtype"] == np.float32 and outs[0]["dtype"] == np.float32
        and len(ins[0]["shape_signature"]) == 2 and len(outs[0]["shape_signature"]) == 4)
  if ok:
    (b_in, latent_dim), (b_out, *sample) = ins[0]["shape_signature"], outs[0]["shape_signature"]
    ok = (b_in == b_out and latent_dim > 0 and all(d > 0 for d in sample) and sample[2] in (1, 3)
          and (b_in == -1 or b_in > 0))
  if not ok:
    raise export.ArtifactError(f"{path}: not a generator (a TFLite generator maps one float32 z (batch, latent) to "
                               f"one float32 image batch (batch, H, W, 1 or 3)); this one maps "
                               f"{[tuple(d['shape_signature']) for d in ins]} -> "
                               f"{[tuple(d['shape_signature']) for d in outs]})")
  return int(latent_dim), tuple(int(d) for d in sample), None if b_in == -1 else int(b_in)


def load_tflite(path: str) -> export.LoadedGenerator:
  """A TFLite generator file as export.LoadedGenerator (z -> images, numpy, any batch)."""
  try:
    with open(path, "rb") as f:
      flatbuffer = f.read()
  except OSError as e:
    raise export.ArtifactError(f"{path}: cannot read ({e.strerror})") from None
  if flatbuffer[4:8] != IDENTIFIER:
    raise export.ArtifactError(f"{path}: not a TFLite model (no TFL3 identifier); make one with export_tflite")
  interpreter = _interpreter(path, flatbuffer)
  latent_dim, sample_shape, batch = _spec(path, interpreter)
  header = read_metadata(path, flatbuffer)
  if header is not None and (header.get("latent_dim"), header.get("output_shape"), header.get("batch")) != (
      latent_dim, list(sample_shape), batch):
    raise export.ArtifactError(f"{path}: the model maps ({batch}, {latent_dim}) -> {sample_shape} but its metadata "
                               f"says ({header.get('batch')}, {header.get('latent_dim')}) -> "
                               f"{header.get('output_shape')}; export it again")
  interpreter.allocate_tensors()
  return export.LoadedGenerator(_runner(interpreter, latent_dim, batch), latent_dim, sample_shape, path)


def _check_finite(variables, path: str) -> None:
  leaves, _ = jax.tree_util.tree_flatten_with_path(variables)
  bad = [jax.tree_util.keystr(p) for p, x in leaves if not np.all(np.isfinite(np.asarray(x)))]
  if bad:
    raise export.ArtifactError(f"the generator has non-finite weights ({bad[0]}); nothing exported to {path}")


def export_tflite(gen, variables, latent_dim: int, sample_shape: tuple, path: str, weights: str = "float32",
                  extra: dict | None = None, batch: int | None = None) -> dict:
  """Writes z -> gen.apply(variables, z) to `path` as a TFLite flatbuffer; returns its header.

  weights: "float32", or "int8" (dynamic-range quantisation, see the module docstring).
  batch: None for a dynamic batch, or the fixed batch B (needed by families whose graph
  TFLite cannot convert with a dynamic one, e.g. ResNet). The header's max_abs_difference
  is max |TFLite - JAX| over CHECK_BATCH fixed z (JAX at highest matmul precision, the
  trained form); a float32 file that differs by more than 1e-4 is not written.
  """
  from gandistill_jax import models
  if weights not in WEIGHTS:
    raise ValueError(f"weights={weights!r} is unknown; use one of {WEIGHTS}")
  if batch is not None and (not isinstance(batch, int) or batch < 1):
    raise ValueError(f"batch={batch!r}: give a positive fixed batch, or None for a dynamic one")
  path = files.check_writable(path)
  _check_finite(variables, path)
  form_gen, form_vars, form = tflite_form(gen, variables, batch)
  flatbuffer = convert(lambda z: form_gen.apply(form_vars, z), latent_dim, batch, weights, path,
                       type(gen).__name__)
  interpreter = _interpreter(path, flatbuffer)
  got = _spec(path, interpreter)
  if got[:2] != (latent_dim, tuple(sample_shape)):
    raise export.ArtifactError(f"{path}: the converted model maps {got[0]} -> {got[1]}, not {latent_dim} -> "
                               f"{tuple(sample_shape)}; nothing exported")
  z = np.asarray(jax.random.normal(jax.random.key(0), (CHECK_BATCH, latent_dim), jnp.float32))
  with jax.default_matmul_precision("highest"):
    want = np.asarray(gen.apply(variables, z))
  err = float(np.max(np.abs(_runner(interpreter, latent_dim, batch)(z) - want)))
  if weights == "float32" and not err <= 1e-4:
    raise export.ArtifactError(f"{path}: the TFLite model differs from the JAX generator by {err:.2e} (> 1e-4); "
                               f"nothing exported")
  header = {"format": "gandistill_jax TFLite generator", "latent_dim": latent_dim,
            "output_shape": list(sample_shape), "value_range": [-1.0, 1.0], "latent_distribution": "N(0, I)",
            "batch": batch, "weights": weights, "inference_form": form,
            "params": models.param_count(variables["params"]), "max_abs_difference": err,
            "jax_version": jax.__version__, "tensorflow_version": _tf().__version__, **(extra or {})}
  data = with_metadata(flatbuffer, header)
  files.write_atomic(path, lambda f: f.write(data), mode="wb")
  return {**header, "bytes": len(data)}


def export_workdir_tflite(workdir: str, out: str, which: str = "auto", weights: str = "float32",
                          batch: int | None = None) -> dict:
  """Exports a workdir's generator (EMA weights by default; see
  export.workdir_generator_variables for `which`) to `out` as TFLite."""
  from gandistill_jax import models
  gen, variables, config = export.workdir_generator_variables(workdir, which)
  sample_shape = models.sample_shape(export._model_config(config, which))
  return export_tflite(gen, variables, config.model.latent_dim, sample_shape, out, weights,
                       {"which": which, "workdir": os.path.basename(os.path.normpath(workdir))}, batch)
