"""A TFDS builder for MNIST-format idx files in a local folder (air-gapped machines).

    builder = local_idx_builder("fashion_mnist", folder="/usr/share/datasets/fashion-mnist",
                                data_dir="~/tensorflow_datasets")
    builder.download_and_prepare()     # reads the folder, writes TFRecords under data_dir
    ds = builder.as_dataset(split="train")

The prepared dataset lives in data_dir/local_idx_sources/<digest of the files>/local_idx/<name>/;
the source folder is only read.
Configs exist for mnist, fashion_mnist and kmnist; the folder for fashion_mnist defaults
to Debian's `dataset-fashion-mnist` package.
"""
from __future__ import annotations

import hashlib
import os

import tensorflow_datasets as tfds

from gandistill_jax.data import idx
from gandistill_jax.data.errors import DataError

NAMES = ("mnist", "fashion_mnist", "kmnist")


class LocalIdx(tfds.core.GeneratorBasedBuilder):
  """28x28 grey images with 10 classes, read from local idx files (manual_dir)."""

  VERSION = tfds.core.Version("1.0.0")
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=n, description=f"{n} from local idx files") for n in NAMES]
  MANUAL_DOWNLOAD_INSTRUCTIONS = ("Put {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] in a folder and "
                                  "pass it as manual_dir (gandistill: data.path).")

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(28, 28, 1)),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"))

  def _split_generators(self, dl_manager):
    folder = str(dl_manager.manual_dir)
    return {split: self._generate_examples(folder, split) for split in idx.SPLIT_PREFIXES}

  def _generate_examples(self, folder, split):
    images, labels = idx.load_idx_split(folder, split)
    if images.shape[1:] != (28, 28, 1):
      raise DataError(f"{folder}: {split} images are {images.shape[1:3]}, local_idx expects 28x28")
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {"image": image, "label": int(label)}


def source_files(name: str, folder: str = "") -> tuple[str, list[str], str]:
  """(folder, its idx files, SHA-256 over their contents) of the idx source for `name`."""
  if name not in NAMES:
    raise DataError(f"local idx dataset {name!r} is unknown; use one of {NAMES}")
  folder = folder or idx.default_folder(name)
  if not folder:
    raise DataError(f"no idx folder for {name}: give data.path=<folder with the idx files>")
  files = [f for split in idx.SPLIT_PREFIXES for f in idx.find_split_files(folder, split)]
  digest = hashlib.sha256()
  for path in files:
    with open(path, "rb") as f:
      digest.update(hashlib.sha256(f.read()).digest())
  return folder, files, digest.hexdigest()


def local_idx_builder(name: str, folder: str = "", data_dir: str = "") -> tfds.core.DatasetBuilder:
  """The prepared (or preparable) LocalIdx builder for `name`, reading `folder`.

  The prepared copy is keyed by the SHA-256 of the source files (data_dir/local_idx_sources/
  <digest>/), so it is reused only for the very same files: another or an emptied folder
  is read (or refused) instead of silently training on an older build."""
  folder, _, digest = source_files(name, folder)
  base = data_dir or os.environ.get("TFDS_DATA_DIR", "") or "~/tensorflow_datasets"
  builder = LocalIdx(config=name, data_dir=os.path.join(os.path.expanduser(base), "local_idx_sources", digest[:16]))
  if not builder.is_prepared():
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=os.path.expanduser(folder)))
  return builder
