import gzip
import os
import struct

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from gandistill_jax import config as config_lib
from gandistill_jax.data import idx, pipeline
from gandistill_jax.data.errors import DataError

FASHION = idx.DEBIAN_FASHION_MNIST


def write_idx(path, array, gz=True):
  header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
  data = header + array.astype(np.uint8).tobytes()
  with open(path, "wb") as f:
    f.write(gzip.compress(data) if gz else data)


def make_idx_folder(folder, n_train=40, n_test=20):
  """Images whose top-left pixel is the example's index, so examples can be told apart."""
  os.makedirs(folder, exist_ok=True)
  for prefix, n, gz in (("train", n_train, True), ("t10k", n_test, False)):
    images = np.zeros((n, 28, 28), np.uint8)
    images[:, 0, 0] = np.arange(n)
    images[:, 10:18, 10:18] = 200
    write_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte" + (".gz" if gz else "")), images, gz)
    write_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte" + (".gz" if gz else "")), np.arange(n) % 10, gz)
  return folder


def data_cfg(**kw):
  cfg = config_lib.base_config().data
  cfg.update(kw)
  return cfg


def test_idx_builder_on_written_files(tmp_path):
  folder = make_idx_folder(str(tmp_path / "user_data"))
  before = sorted(os.listdir(folder))
  cfg = data_cfg(name="mnist", source="idx", path=folder, data_dir=str(tmp_path / "tfds"))
  images, labels = pipeline.load_split(cfg, "train", 28, 1)
  assert images.shape == (40, 28, 28, 1) and images.dtype == np.uint8
  assert sorted(images[:, 0, 0, 0]) == list(range(40))
  np.testing.assert_array_equal(labels, images[:, 0, 0, 0] % 10)
  test_images, _ = pipeline.load_split(cfg, "test", 32, 1)
  assert test_images.shape == (20, 32, 32, 1)   # 28 -> 32 by padding
  assert test_images[:, :2].max() == 0 and test_images[:, 2 + 10, 2 + 10, 0].min() == 200
  assert sorted(os.listdir(folder)) == before, "nothing may be written into the user's data folder"


@pytest.mark.skipif(not os.path.isdir(FASHION), reason="Debian's dataset-fashion-mnist is not installed "
                    "(.ci/run installs it, so CI always runs this)")
def test_idx_builder_on_real_fashion_mnist(tmp_path):
  cfg = data_cfg(name="fashion_mnist", source="auto", data_dir=str(tmp_path))
  images, labels = pipeline.load_split(cfg, "train", 28, 1)
  assert images.shape == (60000, 28, 28, 1)
  np.testing.assert_array_equal(np.bincount(labels), [6000] * 10)
  test_images, _ = pipeline.load_split(cfg, "test", 28, 1)
  assert len(test_images) == 10000


@pytest.mark.parametrize("name, size, channels", [("mnist", 32, 1), ("cifar10", 32, 3),
                                                  ("svhn_cropped", 32, 3), ("celeb_a", 64, 3)])
def test_canonical_tfds_datasets_through_mock_data(tmp_path, name, size, channels):
  cfg = data_cfg(name=name, source="tfds", data_dir=str(tmp_path), download=True)
  with tfds.testing.mock_data(num_examples=12):
    images, labels = pipeline.load_split(cfg, "train", size, channels)
  assert images.shape == (12, size, size, channels) and images.dtype == np.uint8
  assert labels.shape == (12,)


@pytest.mark.parametrize("processes", [2, 4])
def test_processes_feed_the_rows_of_one_global_batch(processes):
  """The global batch is the same for any number of processes; each feeds its own rows."""
  images = np.arange(40, dtype=np.uint8).reshape(40, 1, 1, 1)
  whole = pipeline.BatchStream(images, np.arange(40), global_batch=8, seed=5)
  parts = [pipeline.BatchStream(images, np.arange(40), 8, seed=5, rows=pipeline.process_rows(8, p, processes))
           for p in range(processes)]
  toy_whole = pipeline.ToyStream(8, seed=5)
  toy_parts = [pipeline.ToyStream(8, 5, pipeline.process_rows(8, p, processes)) for p in range(processes)]
  for step in (0, 4, 9):   # 9: the batch crosses an epoch boundary
    np.testing.assert_array_equal(np.concatenate([s.batch(step)["label"] for s in parts]), whole.batch(step)["label"])
    np.testing.assert_array_equal(np.concatenate([s.batch(step)["image"] for s in toy_parts]), toy_whole.batch(step)["image"])
  with pytest.raises(DataError, match="global batch 7 does not divide over 2 processes"):
    pipeline.local_batch_size(7, 2)


def test_stream_is_deterministic_resumable_and_shuffles_each_epoch():
  images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1) * np.ones((1, 2, 2, 1), np.uint8)
  labels = np.arange(10)
  stream = pipeline.BatchStream(images, labels, global_batch=4, seed=3)
  again = pipeline.BatchStream(images, labels, global_batch=4, seed=3)
  first = [stream.batch(k)["label"] for k in range(10)]
  for k in range(10):
    np.testing.assert_array_equal(again.batch(k)["label"], first[k])
  seen = np.concatenate(first)  # 40 draws = 4 epochs of 10, each epoch a permutation
  for e in range(4):
    assert sorted(seen[10 * e:10 * e + 10]) == list(range(10))
  assert not np.array_equal(seen[:10], seen[10:20])
  resumed = stream.iterate(start=6)
  for k in range(6, 10):
    np.testing.assert_array_equal(next(resumed)["label"], first[k])
  other_seed = pipeline.BatchStream(images, labels, 4, seed=4)
  assert not all(np.array_equal(other_seed.batch(k)["label"], first[k]) for k in range(3))
  b = stream.batch(0)["image"]
  assert b.dtype == np.float32 and b.min() >= -1 and b.max() <= 1


def test_image_folder_with_classes(tmp_path):
  for c in ("cat", "dog"):
    os.makedirs(tmp_path / c)
    for i in range(3):
      tf.io.write_file(str(tmp_path / c / f"{i}.png"), tf.io.encode_png(np.full((8, 8, 3), i, np.uint8)))
  cfg = data_cfg(name="pets", source="folder", path=str(tmp_path))
  images, labels = pipeline.load_split(cfg, "train", 32, 3)
  assert images.shape == (6, 32, 32, 3)
  np.testing.assert_array_equal(labels, [0, 0, 0, 1, 1, 1])


def test_offline_tfds_without_data_is_one_clear_error(tmp_path):
  cfg = data_cfg(name="fashion_mnist", source="tfds", data_dir=str(tmp_path))
  with pytest.raises(DataError, match="not prepared .* use the local builder: --set data.source=idx"):
    pipeline.load_split(cfg, "train", 28, 1)


def test_bad_inputs_name_the_file_and_the_problem(tmp_path):
  with pytest.raises(DataError, match="'no_such_set' is not a TFDS dataset"):
    pipeline.load_split(data_cfg(name="no_such_set", source="tfds"), "train", 28, 1)
  with pytest.raises(DataError, match="idx folder .*missing does not exist"):
    pipeline.load_split(data_cfg(name="mnist", source="idx", path=str(tmp_path / "missing"),
                                 data_dir=str(tmp_path / "t")), "train", 28, 1)
  with pytest.raises(DataError, match="image folder .*nowhere does not exist"):
    pipeline.load_split(data_cfg(source="folder", path=str(tmp_path / "nowhere")), "train", 28, 1)
  with pytest.raises(DataError, match="data.source='ftp' is unknown"):
    pipeline.load_split(data_cfg(source="ftp"), "train", 28, 1)

  bad = tmp_path / "bad-images-idx3-ubyte"
  bad.write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 20)
  with pytest.raises(DataError, match=f"{bad}: not a uint8 idx file \\(magic bytes 00000d03"):
    idx.read_idx(str(bad))
  short = tmp_path / "short-images-idx3-ubyte.gz"
  write_idx(str(short), np.zeros((5, 28, 28)))
  short.write_bytes(gzip.compress(gzip.decompress(short.read_bytes())[:-100]))
  with pytest.raises(DataError, match=f"{short}: payload has 3820 bytes, the header \\(5, 28, 28\\) needs 3920"):
    idx.read_idx(str(short))


def test_npz_source_reads_splits_and_refuses_float_images(tmp_path):
  rng = np.random.default_rng(0)
  train = rng.integers(0, 256, (12, 8, 8), dtype=np.uint8)
  path = str(tmp_path / "d.npz")
  np.savez(path, train_images=train, train_labels=np.arange(12) % 3, test_images=train[:4])
  cfg = data_cfg(source="npz", name="digits", path=path)
  images, labels = pipeline.load_split(cfg, "train", 8, 1)
  np.testing.assert_array_equal(images[..., 0], train)
  np.testing.assert_array_equal(labels, np.arange(12) % 3)
  images, labels = pipeline.load_split(cfg, "test", 28, 1)
  assert images.shape == (4, 28, 28, 1) and not labels.any()
  with pytest.raises(DataError, match="no array 'valid_images'"):
    pipeline.load_split(cfg, "valid", 8, 1)
  np.savez(path, train_images=train.astype(np.float32) / 127.5 - 1)
  with pytest.raises(DataError, match=r"float32 with values in \[-1, 1\]; give uint8"):
    pipeline.load_split(cfg, "train", 8, 1)
