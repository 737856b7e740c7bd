"""Test-wide setup: 8 fake CPU devices for the data-parallel tests, TF kept off any GPU, and
torch's GPU compiler kept out."""
import fcntl
import os
import sys
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# caches (evaluation networks, compiled XLA programs) go to a temporary folder, not ~/.cache
os.environ.setdefault("GANDISTILL_CACHE", tempfile.mkdtemp(prefix="gandistill_cache_"))
# PyPI's torch brings triton, its GPU kernel compiler, and torch.optim imports it through
# torch._dynamo. Loaded into a process that already holds TensorFlow, triton's library
# crashes it (`python -c "import tensorflow; import triton"` exits with SIGSEGV), which killed
# a pytest-xdist worker in CI. The tests use torch on the CPU only, and torch treats a
# triton that cannot be imported as absent.
sys.modules.setdefault("triton", None)

import jax  # noqa: E402  (after the flags above)
import pytest  # noqa: E402


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: takes more than a minute (still runs in CI)")


@pytest.fixture(scope="session", autouse=True)
def _eight_devices():
  assert len(jax.devices()) == 8, "tests expect 8 fake CPU devices (XLA_FLAGS set too late?)"


@pytest.fixture(scope="session")
def fashion_mnist_eval():
  """(config, extractor, real features): the shipped Fashion-MNIST feature network and its
  features of the real test split, computed once per test run into a temporary cache (needs
  Debian's files)."""
  from gandistill_jax import config as config_lib
  from gandistill_jax.data import idx
  from gandistill_jax.eval import evaluate
  if not os.path.isdir(idx.DEBIAN_FASHION_MNIST):
    pytest.skip("Debian's dataset-fashion-mnist is not installed (.ci/run installs it, so CI always runs this)")
  # One folder for the whole test run, shared by pytest-xdist's workers through the cache
  # folder set above (inherited from the controller); the first worker prepares the data and
  # the reference features under the lock, the others then load them from the cache.
  root = os.path.join(os.environ["GANDISTILL_CACHE"], "fashion_mnist_eval")
  os.makedirs(root, exist_ok=True)
  config = config_lib.base_config()
  config.model.update(image_size=28, channels=1)
  config.data.data_dir = os.path.join(root, "tfds")
  config.eval.cache_dir = os.path.join(root, "cache")
  with open(os.path.join(root, ".lock"), "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    score = evaluate.reference(config)
  return config, score.extractor, score.real


@pytest.fixture(scope="module")
def idx_data(tmp_path_factory):
  """--set items for a small mock MNIST in idx files (128 train, 64 test images)."""
  from test_data import make_idx_folder
  root = tmp_path_factory.mktemp("data")
  folder = make_idx_folder(str(root / "idx"), n_train=128, n_test=64)
  return ["data.source='idx'", "data.name='mnist'", f"data.path='{folder}'", f"data.data_dir='{root / 'tfds'}'"]
