"""InceptionV3 (pytorch-fid layout): shapes, determinism and the weight-name mapping.

The real pytorch-fid weights cannot be fetched here, so agreement with pytorch-fid's
features is not tested; the mapping from its names and layouts is.
"""
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
  from gandistill_jax.eval import classifier, evaluate
  domain = classifier.FeatureExtractor(classifier.Classifier(10).init(jax.random.key(0), jnp.zeros((1, 28, 28, 3)))["params"],
                                       10, "toy", 0.5)
  logits, feats = evaluate.InceptionFeatures(domain, str(tmp_path / "w.npz")).logits_and_features(np.asarray(x))
  assert logits.shape == (2, 10) and feats.shape == (2, inception.FEATURE_DIM)
  np.testing.assert_allclose(feats, features(x), rtol=1e-5, atol=1e-5)
  del flat["Mixed_6b.branch_pool.bn.running_var"]
  np.savez(tmp_path / "bad.npz", **flat)
  with pytest.raises(ValueError, match="inception weights lack 'Mixed_6b.branch_pool.bn.running_var'"):
    inception.load_inception(str(tmp_path / "bad.npz"))
