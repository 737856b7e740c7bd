"""A domain classifier whose penultimate layer gives FID-style features.

For grey 28/32 px datasets (MNIST, Fashion-MNIST) InceptionV3 features are a poor fit;
like TF-GAN's MNIST score and Fréchet distance, we train a small CNN on the real
training split and use its 128-d penultimate activations (for FID, KID, precision/
recall, density/coverage) and its logits (for the Inception-Score analogue).
Training is deterministic from a seed; the weights are cached as msgpack (flax
serialization, never pickle) beside a JSON with the test accuracy.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import Callable

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

FEATURE_DIM = 128


class Classifier(nn.Module):
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, return_features: bool = False):
    h = x
    for c in (32, 64):
      h = nn.relu(nn.Conv(c, (3, 3))(h))
      h = nn.max_pool(h, (2, 2), (2, 2))
    feats = nn.relu(nn.Dense(FEATURE_DIM)(h.reshape(h.shape[0], -1)))
    logits = nn.Dense(self.num_classes)(feats)
    return (logits, feats) if return_features else logits


def train_classifier(images, labels, num_classes: int, seed: int = 0, epochs: int = 3, batch: int = 128,
                     lr: float = 1e-3, progress: bool = False):
  """Params of a Classifier trained with Adam on float images in [-1, 1]."""
  model = Classifier(num_classes)
  params = model.init(jax.random.key(seed), jnp.zeros((1,) + images.shape[1:]))["params"]
  steps_total = epochs * (len(images) // batch)
  tx = optax.adam(optax.cosine_decay_schedule(lr, steps_total))
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, x, y):
    def loss_fn(p):
      return optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": p}, x), y).mean()
    grads = jax.grad(loss_fn)(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt

  rng = np.random.default_rng(seed)
  bar = tqdm.tqdm(total=steps_total, desc="domain classifier", disable=not progress, dynamic_ncols=True)
  for _ in range(epochs):
    order = rng.permutation(len(images))
    for i in range(0, len(order) - batch + 1, batch):
      idx = order[i:i + batch]
      params, opt = step(params, opt, images[idx], labels[idx])
      bar.update(1)
  bar.close()
  return params


def batched_apply(fn, x, batch: int = 1000):
  outs = [jax.device_get(fn(x[i:i + batch])) for i in range(0, len(x), batch)]
  return jax.tree.map(lambda *a: np.concatenate(a), *outs)


class FeatureExtractor:
  """features(images) -> (N, 128); logits(images) -> (N, classes). Images float in [-1, 1]."""

  def __init__(self, params, num_classes: int, name: str, test_accuracy: float):
    self.model, self.params = Classifier(num_classes), params
    self.name, self.test_accuracy = name, test_accuracy
    self._apply = jax.jit(lambda x: self.model.apply({"params": self.params}, x, return_features=True))

  def logits_and_features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return batched_apply(self._apply, np.asarray(images, np.float32))


def accuracy(extractor: FeatureExtractor, images, labels) -> float:
  logits, _ = extractor.logits_and_features(images)
  return float((logits.argmax(1) == labels).mean())


def load_or_train(cache_dir: str, key: str, train: Callable[[], tuple], test, num_classes: int = 10,
                  seed: int = 0) -> FeatureExtractor:
  """The cached classifier for `key` (e.g. 'fashion_mnist-28'). If it is not cached yet it
  is trained on `train()` = (images, labels), loaded only then, and scored on `test`."""
  tag = hashlib.sha1(f"{key}-{seed}-{num_classes}".encode()).hexdigest()[:10]
  path = os.path.join(cache_dir, f"classifier-{key}-{tag}")
  if os.path.exists(path + ".json"):
    with open(path + ".json") as f:
      meta = json.load(f)
    template = Classifier(num_classes).init(jax.random.key(0), jnp.zeros((1,) + tuple(meta["input_shape"])))["params"]
    with open(path + ".msgpack", "rb") as f:
      params = flax.serialization.from_bytes(template, f.read())
    return FeatureExtractor(params, num_classes, key, meta["test_accuracy"])
  print(f"gandistill: training the {key} domain classifier for evaluation (once; cached in {cache_dir})",
        file=sys.stderr, flush=True)
  train_images, train_labels = train()
  params = train_classifier(train_images, train_labels, num_classes, seed, progress=True)
  extractor = FeatureExtractor(params, num_classes, key, 0.0)
  extractor.test_accuracy = accuracy(extractor, *test)
  os.makedirs(cache_dir, exist_ok=True)
  tmp = f".{os.getpid()}.tmp"   # per process: the processes of one run may all train it, identically
  with open(path + ".msgpack" + tmp, "wb") as f:
    f.write(flax.serialization.to_bytes(params))
  os.replace(path + ".msgpack" + tmp, path + ".msgpack")
  with open(path + ".json" + tmp, "w") as f:   # written last: its presence means the weights are complete
    json.dump({"key": key, "seed": seed, "test_accuracy": extractor.test_accuracy,
               "input_shape": list(train_images.shape[1:]), "train_examples": len(train_images)}, f)
  os.replace(path + ".json" + tmp, path + ".json")
  return extractor
