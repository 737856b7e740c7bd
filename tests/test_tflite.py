"""TFLite generators: agreement with JAX, any batch, int8 weights, loading by content, bad files."""
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gandistill_jax import export, models, tflite
from helpers import tiny_config

# |int8 TFLite - JAX| on these random width-4 generators (outputs in [-1, 1]): 0.08 max and
# 0.003 mean at the time of writing; the bounds leave room for other TFLite kernels
INT8_MAX, INT8_MEAN = 0.15, 0.01


def trained_like(config, seed=0, gain=2.0):
  """(generator, variables, sample shape) of `config` with weights and batch statistics
  that make the outputs spread over [-1, 1] (an initialised DCGAN's are ~1e-3), so
  differences are measured where they can show, not where tanh saturates: kernels
  N(0, gain^2 / fan_in), biases and BN shifts N(0, 0.1^2), BN scales 1 + N(0, 0.1^2),
  running means N(0, 0.1^2), variances in [0.5, 1.5]."""
  gen = models.build_generator(config.model)
  variables = models.init_variables(gen, jax.random.key(seed), jnp.zeros((2, config.model.latent_dim)))
  rng = np.random.default_rng(seed)
  def redraw(path, x):
    name = jax.tree_util.keystr(path)
    if "kernel" in name:
      return rng.normal(0, gain * np.prod(x.shape[:-1]) ** -0.5, x.shape).astype(np.float32)
    if "var" in name:
      return rng.uniform(0.5, 1.5, x.shape).astype(np.float32)
    return ((1.0 if "scale" in name else 0.0) + rng.normal(0, 0.1, x.shape)).astype(np.float32)
  return gen, jax.tree_util.tree_map_with_path(redraw, variables), models.sample_shape(config.model)


# name -> (config, gain): the mobile family's residual sums need the smaller gain
MODELS = {"dcgan28": (tiny_config(g_width=4), 2.0),
          "dcgan32_rgb": (tiny_config(g_width=4, image_size=32, channels=3), 2.0),
          "dcgan28_low_rank": (tiny_config(g_width=4, proj_rank=8), 2.0),
          "mobile28": (tiny_config(family="mobile", g_width=4), 1.0)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """name -> (generator, variables, path, header): each model exported with a dynamic batch."""
  folder = tmp_path_factory.mktemp("tflite")
  out = {}
  for name, (config, gain) in MODELS.items():
    gen, variables, shape = trained_like(config, gain=gain)
    path = str(folder / f"{name}.tflite")
    out[name] = (gen, variables, path, tflite.export_tflite(gen, variables, 16, shape, path))
  return out


def jax_samples(gen, variables, z):
  with jax.default_matmul_precision("highest"):
    return np.asarray(gen.apply(variables, z))


def latents(batch, seed=0):
  return np.random.default_rng(seed).standard_normal((batch, 16)).astype(np.float32)


@pytest.mark.parametrize("name", list(MODELS))
def test_tflite_matches_jax_at_any_batch(exported, name):
  gen, variables, path, header = exported[name]
  loaded = export.load_generator(path)
  assert (loaded.latent_dim, loaded.sample_shape) == (16, tuple(header["output_shape"]))
  for batch in (1, 7, 64):
    z = latents(batch, seed=batch)
    out, ref = loaded(z), jax_samples(gen, variables, z)
    assert out.shape == (batch, *header["output_shape"]) and out.dtype == np.float32
    assert np.abs(out - ref).max() < 1e-4, (name, batch)
  assert np.abs(ref).max() > 0.5 and np.abs(ref).mean() > 0.05, "outputs should spread over [-1, 1]"
  assert 0 <= header["max_abs_difference"] < 1e-4
  assert header["bytes"] == os.path.getsize(path) and header["batch"] is None and header["weights"] == "float32"


def test_header_and_metadata_record_the_spec(exported):
  gen, variables, path, header = exported["dcgan28_low_rank"]
  assert header["latent_dim"] == 16 and header["output_shape"] == [28, 28, 1] and header["value_range"] == [-1, 1]
  assert header["params"] == models.param_count(variables["params"])
  assert header["inference_form"] == {"folded_batch_norm": True, "upsample": ["dilated", "dilated"]}
  with open(path, "rb") as f:
    stored = tflite.read_metadata(path, f.read())
  assert stored == {k: v for k, v in header.items() if k != "bytes"} | {"weights_sha256": stored["weights_sha256"]}
  assert exported["mobile28"][3]["inference_form"] is None   # other families are converted as they are


def test_loading_goes_by_content_not_name(exported, tmp_path):
  gen, variables, path, _ = exported["dcgan28"]
  renamed = str(tmp_path / "generator.jaxexport")   # a TFLite file under another extension
  shutil.copy(path, renamed)
  z = latents(3)
  np.testing.assert_allclose(export.load_generator(renamed)(z), jax_samples(gen, variables, z), atol=1e-4)
  assert tflite.is_tflite(renamed) and not tflite.is_tflite(str(tmp_path / "missing.tflite"))
  assert export.load_generator(renamed)(z, uint8=True).dtype == np.uint8


def test_fixed_batch_runs_any_batch_in_padded_chunks(tmp_path):
  gen, variables, shape = trained_like(MODELS["dcgan32_rgb"][0], seed=1)
  path = str(tmp_path / "fixed.tflite")
  header = tflite.export_tflite(gen, variables, 16, shape, path, batch=8)
  assert header["batch"] == 8 and header["inference_form"]["upsample"] == ["phase"] * 3
  loaded = tflite.load_tflite(path)
  for batch in (1, 8, 20):
    z = latents(batch, seed=batch)
    assert np.abs(loaded(z) - jax_samples(gen, variables, z)).max() < 1e-4
  assert loaded(np.zeros((0, 16), np.float32)).shape == (0, 32, 32, 3)


def test_int8_weights_are_smaller_and_close(exported, tmp_path):
  gen, variables, f32_path, f32 = exported["dcgan28_low_rank"]
  path = str(tmp_path / "int8.tflite")
  header = tflite.export_tflite(gen, variables, 16, (28, 28, 1), path, weights="int8")
  assert header["weights"] == "int8" and header["bytes"] < f32["bytes"]
  interpreter = tflite._interpreter(path, open(path, "rb").read())
  int8 = [t for t in interpreter.get_tensor_details() if t["dtype"] == np.int8]
  assert int8 and all(np.prod(t["shape"]) >= tflite.INT8_MIN_ELEMENTS for t in int8)
  loaded = tflite.load_tflite(path)
  z = latents(64)
  out = loaded(z)
  diff = np.abs(out - jax_samples(gen, variables, z))
  assert 1e-4 < diff.max() < INT8_MAX and diff.mean() < INT8_MEAN and 0 < header["max_abs_difference"] < INT8_MAX
  np.testing.assert_allclose(loaded(z[:5]), out[:5], atol=1e-6)   # a sample does not depend on its batch


def test_a_family_tflite_cannot_convert_says_so_in_one_line(tmp_path):
  config = tiny_config(family="resnet", g_width=4, image_size=32, channels=3)
  gen, variables, shape = trained_like(config)
  path = str(tmp_path / "resnet.tflite")
  with pytest.raises(export.ArtifactError) as e:
    tflite.export_tflite(gen, variables, 16, shape, path)
  msg = str(e.value)
  assert "\n" not in msg and msg.startswith(path) and "cannot convert" in msg and "fixed batch" in msg
  assert not os.path.exists(path)
  tflite.export_tflite(gen, variables, 16, shape, path, batch=4)   # with a fixed batch it converts
  z = latents(5)
  assert np.abs(tflite.load_tflite(path)(z) - jax_samples(gen, variables, z)).max() < 1e-4


def one_line_error(path, match):
  with pytest.raises(export.ArtifactError, match=match) as e:
    export.load_generator(path)
  assert "\n" not in str(e.value) and path in str(e.value)


def test_truncated_garbage_or_edited_files_are_refused(exported, tmp_path):
  from tensorflow.lite.python import schema_py_generated as schema
  _, _, path, _ = exported["dcgan28"]
  with open(path, "rb") as f:
    data = f.read()
  for name, content in {"truncated": data[:len(data) // 2], "garbage": data[:8] + np.random.default_rng(0).bytes(500),
                        "head": data[:8]}.items():
    bad = tmp_path / f"{name}.tflite"
    bad.write_bytes(content)
    one_line_error(str(bad), "not a valid TFLite model")
  model = schema.Model.GetRootAs(data, 0)
  weights = max((model.Buffers(i).DataAsNumpy() for i in range(model.BuffersLength() - 1)),
                key=lambda b: getattr(b, "size", 0)).tobytes()
  at = data.find(weights) + len(weights) // 2
  edited = tmp_path / "edited.tflite"
  edited.write_bytes(data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1:])
  one_line_error(str(edited), "corrupt or edited")


def test_non_finite_weights_or_unknown_options_are_refused(tmp_path):
  gen, variables, shape = trained_like(MODELS["dcgan28"][0])
  variables["params"]["UpConv_0"]["kernel"][0, 0, 0, 0] = np.nan
  path = str(tmp_path / "nan.tflite")
  with pytest.raises(export.ArtifactError, match="non-finite weights.*UpConv_0"):
    tflite.export_tflite(gen, variables, 16, shape, path)
  assert not os.path.exists(path)
  with pytest.raises(ValueError, match="weights='int4'"):
    tflite.export_tflite(gen, variables, 16, shape, path, weights="int4")
