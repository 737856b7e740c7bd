"""Test-wide setup: 8 fake CPU devices for the data-parallel tests, TF kept off any GPU."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402  (after the flags above)
import pytest  # noqa: E402


def pytest_configure(config):
  config.addinivalue_line("markers", "slow: takes more than a minute (still runs in CI)")


@pytest.fixture(scope="session", autouse=True)
def _eight_devices():
  assert len(jax.devices()) == 8, "tests expect 8 fake CPU devices (XLA_FLAGS set too late?)"
