"""A domain classifier whose penultimate layer gives FID-style features.

For grey 28/32 px datasets (MNIST, Fashion-MNIST) InceptionV3 features are a poor fit;
like TF-GAN's MNIST score and Fréchet distance, we use a small CNN trained on the real
training split: its 128-d penultimate activations (for FID, KID, precision/recall,
density/coverage) and its logits (for the Inception-Score analogue).

Which network scores a dataset is decided by the data, never by its name:

- shipped networks (gandistill_jax/eval/networks/, built once by
  experiments/tools/build_feature_networks.py) are used for the data whose evaluation split
  they record (by `arrays.digest`), e.g. Fashion-MNIST's test split at 28 or 32 px: no
  training on first use, and the same features on every machine (as TF-GAN's fixed MNIST
  classifier makes MNIST scores comparable);
- any other data gets a classifier trained on its own labelled training split, cached
  under the digest of that split.

Weights are msgpack (flax serialization, never pickle) beside a JSON record with their
SHA-256, checked on every load, and the test accuracy.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from gandistill_jax.data import arrays

FEATURE_DIM = 128
ARCHITECTURE = "conv32-conv64-dense128-v1"   # part of every network id: a new architecture never reads old weights
NETWORKS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "networks")


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
  batch = min(batch, len(images))   # a small dataset still gets `epochs` passes
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
  """features(images) -> (N, 128); logits(images) -> (N, classes). Images float in [-1, 1].

  `record` says which network this is: its name, the SHA-256 of its weights file, its test
  accuracy and the digest of the data it was trained on."""

  def __init__(self, params, num_classes: int, record: dict):
    self.model, self.params, self.record = Classifier(num_classes), params, record
    self._apply = jax.jit(lambda x: self.model.apply({"params": self.params}, x, return_features=True))

  @property
  def name(self) -> str:
    return self.record["name"]

  @property
  def test_accuracy(self) -> float:
    return self.record["test_accuracy"]

  @property
  def num_classes(self) -> int:
    return self.model.num_classes

  def describe(self) -> str:
    return f"domain classifier ({self.name}, test accuracy {self.test_accuracy:.4f})"

  @property
  def id(self) -> str:
    """What identifies the features: the weights' SHA-256 (the architecture is in the name)."""
    return f"{self.record['name']}@{self.record['weights_sha256']}"

  def logits_and_features(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return batched_apply(self._apply, np.asarray(images, np.float32))


def accuracy(extractor: FeatureExtractor, images, labels) -> float:
  logits, _ = extractor.logits_and_features(images)
  return float((logits.argmax(1) == labels).mean())


def _template(num_classes: int, input_shape) -> dict:
  return Classifier(num_classes).init(jax.random.key(0), jnp.zeros((1,) + tuple(input_shape)))["params"]


def write_network(prefix: str, params, record: dict) -> dict:
  """prefix.msgpack (the weights, in their own dtype) and prefix.json (`record` plus the
  weights' SHA-256), each written to a temporary file of this process and renamed; the JSON
  comes last, so its presence means the weights are complete. Returns the full record."""
  data = flax.serialization.to_bytes(params)
  record = dict(record, weights_sha256=hashlib.sha256(data).hexdigest())
  os.makedirs(os.path.dirname(prefix) or ".", exist_ok=True)
  tmp = f".{os.getpid()}.tmp"   # per process: the processes of one run may all write it, identically
  with open(prefix + ".msgpack" + tmp, "wb") as f:
    f.write(data)
  os.replace(prefix + ".msgpack" + tmp, prefix + ".msgpack")
  with open(prefix + ".json" + tmp, "w") as f:
    json.dump(record, f, indent=2, sort_keys=True)
  os.replace(prefix + ".json" + tmp, prefix + ".json")
  return record


def read_network(prefix: str) -> FeatureExtractor:
  """The network written by write_network; a weights file whose SHA-256 differs from its
  record is refused (ValueError naming the file), never used."""
  with open(prefix + ".json") as f:
    record = json.load(f)
  with open(prefix + ".msgpack", "rb") as f:
    data = f.read()
  if hashlib.sha256(data).hexdigest() != record.get("weights_sha256"):
    raise ValueError(f"{prefix}.msgpack: feature network damaged (its SHA-256 is not the "
                     f"{str(record.get('weights_sha256'))[:12]}... its record gives); delete it to retrain it, or "
                     f"reinstall gandistill_jax if it is a shipped network")
  dtype = np.dtype(record.get("dtype", "float32"))
  template = jax.tree.map(lambda x: np.zeros(x.shape, dtype), _template(record["num_classes"], record["input_shape"]))
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), flax.serialization.from_bytes(template, data))
  return FeatureExtractor(params, record["num_classes"], record)


def shipped_network(input_shape, eval_digest: str, directory: str = NETWORKS_DIR) -> FeatureExtractor | None:
  """The shipped network for the data whose evaluation split has digest `eval_digest` at
  `input_shape` (H, W, C), or None."""
  if not os.path.isdir(directory):
    return None
  for name in sorted(os.listdir(directory)):
    if not name.endswith(".json"):
      continue
    with open(os.path.join(directory, name)) as f:
      record = json.load(f)
    if record.get("eval_data_sha256") == eval_digest and tuple(record["input_shape"]) == tuple(input_shape):
      return read_network(os.path.join(directory, name[:-len(".json")]))
  return None


def load_or_train(cache_dir: str, images: np.ndarray, labels: np.ndarray, test: tuple, num_classes: int,
                  seed: int = 0) -> FeatureExtractor:
  """The classifier trained on (images, labels) (uint8 (N, H, W, C) and ints), from the
  cache, or trained now (deterministic from `seed`), scored on `test` = (uint8 images,
  labels) and cached. The cache key holds the data's digest, the architecture, the seed,
  the classes and the input shape, so other data under the same name never meets these
  weights."""
  train_digest = arrays.digest(images, labels)
  shape = tuple(images.shape[1:])
  key = hashlib.sha256(f"{train_digest} {ARCHITECTURE} {seed} {num_classes} {shape}".encode()).hexdigest()[:16]
  prefix = os.path.join(cache_dir, f"classifier-{key}")
  if os.path.exists(prefix + ".json"):
    return read_network(prefix)
  print(f"gandistill: training a domain classifier for evaluation on the data of digest {train_digest[:12]} "
        f"(once; cached in {cache_dir})", file=sys.stderr, flush=True)
  params = train_classifier(arrays.to_float(images), labels, num_classes, seed, progress=True)
  record = {"name": f"classifier-{ARCHITECTURE}-data-{train_digest[:12]}", "architecture": ARCHITECTURE,
            "seed": seed, "num_classes": num_classes, "input_shape": list(shape), "dtype": "float32",
            "train_data_sha256": train_digest, "train_examples": len(images)}
  test_images, test_labels = test
  # what test_accuracy was measured on; the training data's own digest when no held-out split exists
  record["test_data_sha256"] = arrays.digest(test_images, test_labels)
  record["test_accuracy"] = accuracy(FeatureExtractor(params, num_classes, dict(record, weights_sha256="")),
                                     arrays.to_float(test_images), test_labels)
  write_network(prefix, params, record)
  return read_network(prefix)
