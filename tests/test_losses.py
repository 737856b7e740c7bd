import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gandistill_jax import losses

REAL, FAKE = jnp.array([2.0, -1.0]), jnp.array([0.5, -3.0])
sp = lambda t: np.log1p(np.exp(t))


@pytest.mark.parametrize("name, d_expected, g_expected", [
    ("minimax", np.mean(sp(-REAL)) + np.mean(sp(FAKE)), -np.mean(sp(FAKE))),
    ("nonsaturating", np.mean(sp(-REAL)) + np.mean(sp(FAKE)), np.mean(sp(-FAKE))),
    ("hinge", np.mean([0.0, 2.0]) + np.mean([1.5, 0.0]), -np.mean(FAKE)),
    ("wgan", np.mean(FAKE) - np.mean(REAL), -np.mean(FAKE)),
    ("lsgan", 0.5 * np.mean([1.0, 4.0]) + 0.5 * np.mean([0.25, 9.0]), 0.5 * np.mean([0.25, 16.0])),
])
def test_adversarial_losses_match_hand_values(name, d_expected, g_expected):
  loss = losses.adversarial(name)
  np.testing.assert_allclose(loss.d_loss(REAL, FAKE), d_expected, rtol=1e-6)
  np.testing.assert_allclose(loss.g_loss(FAKE), g_expected, rtol=1e-6)


def test_unknown_loss_is_a_clear_error():
  with pytest.raises(ValueError, match="loss.name='foo' is unknown"):
    losses.adversarial("foo")


def test_gradient_penalty_of_linear_critic():
  # D(x) = <w, x>: grad = w everywhere, so GP = (||w|| - 1)^2 whatever the interpolation.
  w = jnp.array([[3.0, 4.0]])
  d_fn = lambda x: jnp.sum(x * w, axis=1)
  real, fake = jnp.ones((5, 2)), jnp.zeros((5, 2))
  np.testing.assert_allclose(losses.gradient_penalty(d_fn, real, fake, jax.random.key(0)), 16.0, rtol=1e-5)


def test_r1_penalty_of_quadratic_critic():
  # D(x) = 1/2 ||x||^2: grad = x, so R1 = 1/2 mean ||x||^2.
  d_fn = lambda x: 0.5 * jnp.sum(x**2, axis=(1, 2))
  real = jnp.arange(12.0).reshape(2, 3, 2)
  expected = 0.5 * np.mean(np.sum(np.asarray(real) ** 2, axis=(1, 2)))
  np.testing.assert_allclose(losses.r1_penalty(d_fn, real), expected, rtol=1e-6)


def test_pixel_and_feature_losses():
  s, t = jnp.array([1.0, -1.0]), jnp.array([0.0, 1.0])
  np.testing.assert_allclose(losses.pixel_loss(s, t, 1), 1.5)
  np.testing.assert_allclose(losses.pixel_loss(s, t, 2), 2.5)
  with pytest.raises(ValueError, match="pixel_p=3"):
    losses.pixel_loss(s, t, 3)
  np.testing.assert_allclose(losses.feature_loss([s, 2 * s], [t, t], [1.0, 0.5]), 1.5 + 0.5 * 2.5)
  with pytest.raises(ValueError, match="must match"):
    losses.feature_loss([s], [t, t], [1.0])
