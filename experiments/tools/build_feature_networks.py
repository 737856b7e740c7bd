"""Builds the feature networks shipped in gandistill_jax/eval/networks/: the domain
classifier of each built-in dataset the package reads offline, trained once,
deterministically (seed 0, 3 epochs of Adam, the examples in the order TFDS's local idx
builder gives them), its weights stored as float16 with their SHA-256, the digests of the
training and evaluation splits, and the test accuracy of the stored (float16) weights.

    python experiments/tools/build_feature_networks.py [--out gandistill_jax/eval/networks]

Fashion-MNIST is read from Debian's files (apt-get install dataset-fashion-mnist). The
evaluation picks a shipped network by the digest of the evaluation split it scores
against, so these weights meet no other data.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np

from gandistill_jax import config as config_lib
from gandistill_jax.data import arrays, pipeline
from gandistill_jax.eval import classifier

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "..", "gandistill_jax", "eval", "networks")
# (dataset, image size, channels): the shapes the built-in configs train at (28) and the base
# config's default (32, padded by 2).
NETWORKS = (("fashion_mnist", 28, 1), ("fashion_mnist", 32, 1))


def build(name: str, size: int, channels: int, out: str, data_dir: str) -> dict:
  data = config_lib.base_config().data
  data.update(name=name, source="idx", data_dir=data_dir)
  train_images, train_labels = pipeline.load_split(data, data.split, size, channels)
  test_images, test_labels = pipeline.load_split(data, data.eval_split, size, channels)
  num_classes = int(train_labels.max()) + 1
  start = time.perf_counter()
  params = classifier.train_classifier(arrays.to_float(train_images), train_labels, num_classes, seed=0,
                                       progress=True)
  seconds = time.perf_counter() - start
  params16 = jax.tree.map(lambda x: np.asarray(x, np.float16), params)
  prefix = os.path.join(out, f"{name}-{size}px-{channels}ch")
  record = {"name": f"{name}-{size}px-{channels}ch", "architecture": classifier.ARCHITECTURE, "seed": 0,
            "num_classes": num_classes, "input_shape": [size, size, channels], "dtype": "float16",
            "train_data_sha256": arrays.digest(train_images, train_labels), "train_examples": len(train_images),
            "eval_data_sha256": arrays.digest(test_images, test_labels), "eval_examples": len(test_images),
            "eval_split": data.eval_split, "built_with": f"jax {jax.__version__}, {jax.devices()[0].device_kind}",
            "test_accuracy": 0.0}
  classifier.write_network(prefix, params16, record)
  extractor = classifier.read_network(prefix)
  record = dict(extractor.record,
                test_accuracy=classifier.accuracy(extractor, arrays.to_float(test_images), test_labels))
  record = classifier.write_network(prefix, params16, record)
  print(f"{record['name']}: test accuracy {record['test_accuracy']:.4f}, weights sha256 "
        f"{record['weights_sha256']}, {os.path.getsize(prefix + '.msgpack') / 1e3:.0f} kB, trained in "
        f"{seconds:.0f} s", flush=True)
  return record


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--out", default=DEFAULT_OUT)
  p.add_argument("--data-dir", default="", help="TFDS data_dir for the prepared idx build")
  args = p.parse_args()
  for name, size, channels in NETWORKS:
    build(name, size, channels, os.path.abspath(args.out), args.data_dir)


if __name__ == "__main__":
  sys.exit(main())
