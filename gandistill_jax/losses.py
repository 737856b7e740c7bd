"""GAN and distillation losses as small pure functions of logits, images or features.

Adversarial losses take the discriminator's logits l = D(x) (pre-sigmoid) and return
scalars averaged over the batch; the discriminator *minimises* `d_loss` and the
generator minimises `g_loss`. softplus(t) = log(1 + e^t), so -log sigmoid(l) =
softplus(-l) and -log(1 - sigmoid(l)) = softplus(l).
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

Array = jax.Array


class AdversarialLoss(NamedTuple):
  d_loss: Callable[[Array, Array], Array]   # (real_logits, fake_logits) -> scalar
  g_loss: Callable[[Array], Array]          # fake_logits -> scalar


def minimax_d(real: Array, fake: Array) -> Array:
  """-E[log D(x)] - E[log(1 - D(G(z)))]  (Goodfellow et al. 2014, eq. 1)."""
  return jnp.mean(jax.nn.softplus(-real)) + jnp.mean(jax.nn.softplus(fake))


def minimax_g(fake: Array) -> Array:
  """E[log(1 - D(G(z)))], the saturating generator loss of Goodfellow et al. 2014."""
  return -jnp.mean(jax.nn.softplus(fake))


def nonsaturating_g(fake: Array) -> Array:
  """-E[log D(G(z))], the non-saturating generator loss (Goodfellow et al. 2014, sec. 3)."""
  return jnp.mean(jax.nn.softplus(-fake))


def hinge_d(real: Array, fake: Array) -> Array:
  """E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))]  (Lim & Ye 2017; Miyato et al. 2018)."""
  return jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(jax.nn.relu(1.0 + fake))


def hinge_g(fake: Array) -> Array:
  """-E[D(G(z))]."""
  return -jnp.mean(fake)


def wasserstein_d(real: Array, fake: Array) -> Array:
  """E[D(G(z))] - E[D(x)], the critic loss of WGAN (Arjovsky et al. 2017)."""
  return jnp.mean(fake) - jnp.mean(real)


def least_squares_d(real: Array, fake: Array) -> Array:
  """1/2 E[(D(x) - 1)^2] + 1/2 E[D(G(z))^2]  (LSGAN, Mao et al. 2017, a=0, b=c=1)."""
  return 0.5 * jnp.mean((real - 1.0) ** 2) + 0.5 * jnp.mean(fake**2)


def least_squares_g(fake: Array) -> Array:
  """1/2 E[(D(G(z)) - 1)^2]."""
  return 0.5 * jnp.mean((fake - 1.0) ** 2)


ADVERSARIAL = {
    "minimax": AdversarialLoss(minimax_d, minimax_g),
    "nonsaturating": AdversarialLoss(minimax_d, nonsaturating_g),
    "hinge": AdversarialLoss(hinge_d, hinge_g),
    "wgan": AdversarialLoss(wasserstein_d, hinge_g),
    "lsgan": AdversarialLoss(least_squares_d, least_squares_g),
}


def adversarial(name: str) -> AdversarialLoss:
  if name not in ADVERSARIAL:
    raise ValueError(f"loss.name={name!r} is unknown; use one of {sorted(ADVERSARIAL)}")
  return ADVERSARIAL[name]


def _per_sample_grad_norm_sq(d_fn: Callable[[Array], Array], x: Array) -> Array:
  """||grad_x D(x)_i||^2 per sample; valid because D treats samples independently."""
  grads = jax.grad(lambda v: jnp.sum(d_fn(v)))(x)
  return jnp.sum(grads.reshape(x.shape[0], -1) ** 2, axis=1)


def gradient_penalty(d_fn: Callable[[Array], Array], real: Array, fake: Array, rng: Array) -> Array:
  """WGAN-GP: E[(||grad D(x_hat)||_2 - 1)^2], x_hat = e x + (1 - e) G(z), e ~ U[0, 1]
  (Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", alg. 1)."""
  eps = jax.random.uniform(rng, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
  x_hat = eps * real + (1.0 - eps) * fake
  return jnp.mean((jnp.sqrt(_per_sample_grad_norm_sq(d_fn, x_hat) + 1e-12) - 1.0) ** 2)


def r1_penalty(d_fn: Callable[[Array], Array], real: Array) -> Array:
  """R1: 1/2 E[||grad D(x)||^2] on real data (Mescheder et al. 2018, "Which Training
  Methods for GANs do actually Converge?", eq. 9); multiply by gamma outside."""
  return 0.5 * jnp.mean(_per_sample_grad_norm_sq(d_fn, real))


def pixel_loss(student: Array, teacher: Array, p: int = 1) -> Array:
  """E_z ||G_s(z) - G_t(z)||_p^p / n_pixels: mean absolute (p=1) or squared (p=2) error
  (Aguinaldo et al. 2019, "Compressing GANs using Knowledge Distillation")."""
  if p not in (1, 2):
    raise ValueError(f"distill.pixel_p={p} is not supported; use 1 (L1) or 2 (L2)")
  diff = student - teacher
  return jnp.mean(jnp.abs(diff)) if p == 1 else jnp.mean(diff**2)


def feature_loss(student: Sequence[Array], teacher: Sequence[Array], weights: Sequence[float]) -> Array:
  """sum_l w_l * mean |f_l(student) - f_l(teacher)|, the L1 feature matching of
  TinyGAN (Chang & Lu 2020) on D's activations and of GAN Compression (Li et al. 2020)
  on G's (with the student's features first mapped by 1x1 adapters)."""
  if not len(student) == len(teacher) == len(weights):
    raise ValueError(f"feature_loss got {len(student)} student, {len(teacher)} teacher "
                     f"features and {len(weights)} weights; they must match")
  return sum(w * jnp.mean(jnp.abs(s - t)) for s, t, w in zip(student, teacher, weights))
