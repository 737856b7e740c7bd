"""Exported generators: agreement with the library, a fresh-process round trip, bad input."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gandistill_jax import export, models
from gandistill_jax.models import dcgan
from helpers import tiny_config


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  config = tiny_config(g_width=4, proj_rank=8)
  gen = models.build_generator(config.model)
  variables = models.init_variables(gen, jax.random.key(0), jnp.zeros((2, 16)))
  variables["batch_stats"] = jax.tree.map(lambda x: x + 0.5, variables["batch_stats"])
  bias = variables["params"]["proj"]["bias"]   # zero at init; a trained one is not
  variables["params"]["proj"]["bias"] = jax.random.normal(jax.random.key(1), bias.shape)
  path = str(tmp_path_factory.mktemp("exp") / "g.jaxexport")
  header = export.export_generator(gen, variables, 16, (28, 28, 1), path)
  return gen, variables, path, header


@pytest.mark.parametrize("fuse", [False, True])
@pytest.mark.parametrize("methods", [("phase", "phase"), ("dilated", "dilated"), ("phase", "dilated"), ("dilated", "im2col")])
def test_folded_batch_norm_form_equals_the_trained_generator(exported, fuse, methods):
  gen, variables, _, _ = exported
  folded_gen, folded = dcgan.fold_batch_norm(gen, variables, fuse_projection=fuse)
  assert "batch_stats" not in folded and not any("BatchNorm" in k for k in folded["params"])
  assert ("proj_low_rank" in folded["params"]) == (not fuse)
  z = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
  with jax.default_matmul_precision("highest"):
    np.testing.assert_allclose(folded_gen.clone(upsample=methods).apply(folded, z), gen.apply(variables, z),
                               atol=1e-5, rtol=1e-5)


def test_export_records_its_inference_form_and_can_keep_the_trained_one(exported, tmp_path):
  gen, variables, _, header = exported
  form = header["inference_form"]
  assert form["folded_batch_norm"] and len(form["upsample"]) == 2 and form["max_abs_difference"] < 1e-5
  plain = export.export_generator(gen, variables, 16, (28, 28, 1), str(tmp_path / "plain.jaxexport"), optimize=False)
  assert plain["inference_form"] is None
  mobile = models.build_generator(tiny_config(family="mobile", g_width=4).model)   # no folding for other families
  mv = models.init_variables(mobile, jax.random.key(0), jnp.zeros((2, 16)))
  assert export.export_generator(mobile, mv, 16, (28, 28, 1), str(tmp_path / "m.jaxexport"))["inference_form"] is None


@pytest.mark.parametrize("batch", [1, 3, 64])
def test_exported_and_library_outputs_agree(exported, batch):
  gen, variables, path, _ = exported
  z = np.random.default_rng(batch).standard_normal((batch, 16)).astype(np.float32)
  with jax.default_matmul_precision("highest"):
    ours = export.load_generator(path)(z)
    ref = np.asarray(gen.apply(variables, z))
  assert ours.shape == (batch, 28, 28, 1)
  np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=1e-5)


def test_round_trip_in_a_fresh_process_needs_only_jax(exported, tmp_path):
  gen, variables, path, header = exported
  assert header["latent_dim"] == 16 and header["output_shape"] == [28, 28, 1] and "cpu" in header["platforms"]
  z = np.random.default_rng(0).standard_normal((5, 16)).astype(np.float32)
  np.save(tmp_path / "z.npy", z)
  code = (f"import sys, numpy as np, gandistill_jax\n"
          f"g = gandistill_jax.load_generator({path!r})\n"
          f"np.save({str(tmp_path / 'out.npy')!r}, g(np.load({str(tmp_path / 'z.npy')!r})))\n"
          f"print(sorted(m for m in sys.modules if m.split('.')[0] in ('flax', 'optax', 'tensorflow', 'orbax')))\n")
  env = dict(os.environ, XLA_FLAGS="", JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip().splitlines()[-1] == "[]", "loading must not import flax, optax, TF or orbax"
  np.testing.assert_allclose(np.load(tmp_path / "out.npy"), gen.apply(variables, z), atol=1e-5, rtol=1e-5)


def test_corrupt_truncated_and_foreign_files_get_their_errors(exported, tmp_path):
  _, _, path, _ = exported
  data = open(path, "rb").read()
  flipped = tmp_path / "flipped.jaxexport"
  flipped.write_bytes(data[:-50] + bytes([data[-50] ^ 0xFF]) + data[-49:])
  with pytest.raises(export.ArtifactError, match="corrupt or edited"):
    export.load_generator(str(flipped))
  short = tmp_path / "short.jaxexport"
  short.write_bytes(data[:len(data) // 2])
  with pytest.raises(export.ArtifactError, match="truncated or corrupt"):
    export.load_generator(str(short))
  header, payload = export.read_artifact(path)
  raw = json.dumps(header | {"output_shape": [32, 32, 1]}).encode()   # an edited header, same length checks
  edited = tmp_path / "edited.jaxexport"
  edited.write_bytes(export.MAGIC + bytes([export.VERSION]) + len(raw).to_bytes(4, "big") + raw + payload)
  with pytest.raises(export.ArtifactError, match="corrupt or edited"):
    export.load_generator(str(edited))
  foreign = tmp_path / "model.npz"
  foreign.write_bytes(b"PK\x03\x04 not ours")
  with pytest.raises(export.ArtifactError, match="not a gandistill exported generator"):
    export.load_generator(str(foreign))


def test_wrong_latent_shape_and_platform_are_clear_errors(exported, tmp_path):
  _, _, path, _ = exported
  g = export.load_generator(path)
  with pytest.raises(ValueError, match=r"z has shape \(2, 15\); this generator takes \(batch, 16\)"):
    g(np.zeros((2, 15)))
  header, payload = export.read_artifact(path)
  header["platforms"] = ["tpu"]
  header["sha256"] = export._digest(header, payload)
  raw = json.dumps(header).encode()
  tpu_only = tmp_path / "tpu.jaxexport"
  tpu_only.write_bytes(export.MAGIC + bytes([export.VERSION]) + len(raw).to_bytes(4, "big") + raw + payload)
  with pytest.raises(export.ArtifactError, match=r"exported for \['tpu'\], not for this cpu device"):
    export.load_generator(str(tpu_only))


def test_non_finite_weights_are_never_exported(exported, tmp_path):
  gen, variables, _, _ = exported
  broken = jax.tree.map(lambda x: x * np.nan, variables)
  with pytest.raises(export.ArtifactError, match="non-finite weights"):
    export.export_generator(gen, broken, 16, (28, 28, 1), str(tmp_path / "nan.jaxexport"))
  assert not os.path.exists(tmp_path / "nan.jaxexport")
