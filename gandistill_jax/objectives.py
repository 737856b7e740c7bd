"""Distillation objectives as composable terms: L = sum_i w_i(step) * b_i * L_i.

A `Term` is a name, a weight (a float or an optax schedule of the step), and a pure loss
function of `TermInputs` (the student's outputs, the frozen teacher's outputs for the
same z, the discriminators as functions, the real batch). The distill step sums the
terms it is given; the built-in ones below are made from `config.distill` by
`terms_from_config`, and a user adds a term without touching the package by passing
`extra_terms` to `distill.distill_task`.

Built-in terms (their papers in the docstrings):

  pixel    |G_s(z) - G_t(z)|_p                          Aguinaldo et al. 2019
  adv      generator adversarial loss against the student-side D
  dfeat    L1 between D's activations on G_s(z) and G_t(z)   TinyGAN, Chang & Lu 2020
  gfeat    L1 between adapted student and teacher G features  GAN Compression, Li et al. 2020
  content  RMSE between D's activations on G_s(z) and G_t(z)  GCC, Li et al. 2021
  style    RMSE between Gram matrices of those activations    GCC, Li et al. 2021
  mmd      MMD^2 between student and teacher batches in the frozen teacher D's
           feature space (a distribution term: no per-z pairing)   cf. DiME, Yeo et al. 2024

`b_i` is 1 unless the term is *balanced* (VQGAN, Esser et al. 2021, eq. 7): then
b_i = sg(||grad_x L_pixel|| / (||grad_x L_i|| + 1e-4)), clipped to [0, 1e4], so the term
pulls on the student as hard as the reconstruction term at any width. VQGAN takes the
gradients at the generator's last layer; we take them at its output image x = G_s(z),
which needs no second generator pass (the last layer is linear in its input, and both
terms reach the weights only through x).

Nothing here imports gandistill_jax.eval: the networks that score samples never shape them.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import optax

from gandistill_jax import losses

Array = jax.Array
Features = Sequence[Array]
DiscFn = Callable[[Array], tuple[Array, Features]]   # images -> (logits, features)


@dataclasses.dataclass(frozen=True)
class TermInputs:
  """What a term may read. `image` is the student's output and the only input that carries
  gradient to the student (with `features` and `adapt`); everything of the teacher is
  under stop_gradient. `disc` is the student-side discriminator (None if the run has none),
  `teacher_disc` the frozen teacher D; both map images to (logits, features)."""
  step: Array
  z: Array
  image: Array
  features: Features
  teacher_image: Array
  teacher_features: Features | None
  real: Array
  disc: DiscFn | None
  teacher_disc: DiscFn
  adapt: Callable[[Features], Features] | None = None


@dataclasses.dataclass(frozen=True)
class Term:
  """One weighted loss term. `weight` is a float or an optax schedule (step -> float);
  `balanced` scales the term by the VQGAN gradient-norm ratio against the pixel loss;
  `needs_disc` asks the distill task to train a student-side D for `TermInputs.disc`;
  `needs_teacher_disc` says it reads `TermInputs.teacher_disc`, so that a teacher without a
  discriminator (an exported or converted generator, stored pairs) is refused up front."""
  name: str
  fn: Callable[[TermInputs], Array]
  weight: float | optax.Schedule = 1.0
  balanced: bool = False
  needs_disc: bool = False
  needs_teacher_disc: bool = False

  def weight_at(self, step) -> Array:
    return jnp.asarray(self.weight(step) if callable(self.weight) else self.weight, jnp.float32)


# ---------------------------------------------------------------- schedules

def schedule(spec: str) -> optax.Schedule:
  """A weight multiplier from a short spec (steps are the distill run's own):

    'constant'     1
    'warmup:N'     0 before step N, 1 from N on
    'ramp:A:B'     0 until A, linear 0 -> 1 from A to B, then 1
    'decay:A:B'    1 until A, linear 1 -> 0 from A to B, then 0 (TinyGAN's pixel weight)
    'cosine:B'     cosine decay 1 -> 0 over steps 0..B, then 0
  """
  name, *args = spec.split(":")
  try:
    nums = [int(a) for a in args]
  except ValueError:
    nums = None
  arity = {"constant": 0, "warmup": 1, "ramp": 2, "decay": 2, "cosine": 1}
  if name not in arity or nums is None or len(nums) != arity[name] or any(n < 0 for n in nums) or (
      len(nums) == 2 and nums[1] <= nums[0]) or (name == "cosine" and nums[0] == 0):
    raise ValueError(f"schedule {spec!r} is not valid; use 'constant', 'warmup:N', 'ramp:A:B', "
                     f"'decay:A:B' (0 <= A < B) or 'cosine:B' (B > 0)")
  if name == "constant":
    return optax.constant_schedule(1.0)
  if name == "warmup":
    return optax.join_schedules([optax.constant_schedule(0.0), optax.constant_schedule(1.0)], [nums[0]])
  if name == "ramp":
    return optax.linear_schedule(0.0, 1.0, nums[1] - nums[0], transition_begin=nums[0])
  if name == "decay":
    return optax.linear_schedule(1.0, 0.0, nums[1] - nums[0], transition_begin=nums[0])
  return optax.cosine_decay_schedule(1.0, nums[0])


def weight(value: float, spec: str = "constant") -> float | optax.Schedule:
  """`value` times the schedule `spec` (a plain float when the schedule is constant)."""
  if spec == "constant":
    return value
  s = schedule(spec)
  return lambda step: value * s(step)


# ---------------------------------------------------------------- losses on features

def tinygan_layer_weights(n: int) -> tuple[float, ...]:
  """TinyGAN's per-layer weights (1/32, 1/16, 1/8, 1/4, 1), fine to coarse; the last n
  (layers beyond five get 1/32)."""
  w = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
  return w[-n:] if n <= 5 else (1 / 32,) * (n - 5) + w


def rmse(a: Array, b: Array) -> Array:
  return jnp.sqrt(jnp.mean((a - b) ** 2) + 1e-12)


def gram(f: Array) -> Array:
  """Gram matrix of (B, H, W, C) activations: G_b = F_b^T F_b / (H W), shape (B, C, C)
  (Gatys et al. 2016)."""
  b, c = f.shape[0], f.shape[-1]
  f = f.reshape(b, -1, c)
  return jnp.einsum("bnc,bnd->bcd", f, f) / f.shape[1]


def mmd2(x: Array, y: Array, scales: Sequence[float] = (0.5, 1.0, 2.0)) -> Array:
  """Unbiased MMD^2 between samples x (n, d) and y (m, d) with a sum of Gaussian kernels
  k(a, b) = sum_s exp(-|a - b|^2 / (2 (s * sigma)^2)), sigma^2 = the median squared pairwise
  distance (held constant, under stop_gradient)  (Gretton et al. 2012, eq. 3)."""
  n, m = x.shape[0], y.shape[0]
  xy = jnp.concatenate([x, y])
  sq = jnp.sum(xy**2, 1)
  d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2 * xy @ xy.T, 0.0)
  sigma2 = jax.lax.stop_gradient(jnp.median(d2) + 1e-8)
  k = sum(jnp.exp(-d2 / (2 * s * s * sigma2)) for s in scales)
  kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
  off = lambda a, size: (jnp.sum(a) - jnp.trace(a)) / (size * (size - 1))
  return off(kxx, n) + off(kyy, m) - 2 * jnp.mean(kxy)


def _flat_features(feats: Features) -> Array:
  """Spatially pooled features of every layer, concatenated: (B, sum_l C_l)."""
  return jnp.concatenate([f.reshape(f.shape[0], -1, f.shape[-1]).mean(1) for f in feats], axis=1)


# ---------------------------------------------------------------- built-in term functions

def pixel_term(p: int) -> Callable[[TermInputs], Array]:
  return lambda t: losses.pixel_loss(t.image, t.teacher_image, p)


def adversarial_term(g_loss: Callable[[Array], Array]) -> Callable[[TermInputs], Array]:
  return lambda t: g_loss(t.disc(t.image)[0])


def _paired_features(source: str) -> Callable[[TermInputs], tuple[Features, Features]]:
  """t -> (D^l(G_s(z)), sg(D^l(G_t(z)))) on the student-side or the frozen teacher D."""
  if source not in ("student", "teacher"):
    raise ValueError(f"distill.dfeat_d or distill.gcc_d={source!r} is unknown; use 'student' or 'teacher'")
  def pair(t):
    d = t.disc if source == "student" else t.teacher_disc
    return d(t.image)[1], jax.lax.stop_gradient(d(t.teacher_image)[1])
  return pair


def d_feature_term(source: str, layer_weights: Sequence[float], weighting: str = "uniform"
                   ) -> Callable[[TermInputs], Array]:
  """sum_l w_l |D^l(G_s(z)) - D^l(G_t(z))|_1 on `source`'s D (TinyGAN: the student-side D).
  w = `layer_weights`, or when empty 1/n each ('uniform') or TinyGAN's ('tinygan')."""
  pair = _paired_features(source)
  if weighting not in ("uniform", "tinygan"):
    raise ValueError(f"distill.dfeat_layer_weighting={weighting!r} is unknown; use 'uniform' or 'tinygan'")
  def fn(t):
    s, te = pair(t)
    n = len(s)
    w = tuple(layer_weights) or (tinygan_layer_weights(n) if weighting == "tinygan" else (1.0 / n,) * n)
    if len(w) != n:
      raise ValueError(f"distill.dfeat_layer_weights has {len(w)} entries; the discriminator has {n} layers")
    return losses.feature_loss(s, te, w)
  return fn


def content_term(source: str) -> Callable[[TermInputs], Array]:
  """GCC's content loss: sum_l RMSE(D^l(G_s(z)), D^l(G_t(z)))."""
  pair = _paired_features(source)
  return lambda t: sum(rmse(a, b) for a, b in zip(*pair(t)))


def style_term(source: str) -> Callable[[TermInputs], Array]:
  """GCC's style loss: sum_l RMSE(Gram(D^l(G_s(z))), Gram(D^l(G_t(z))))."""
  pair = _paired_features(source)
  return lambda t: sum(rmse(gram(a), gram(b)) for a, b in zip(*pair(t)))


def g_feature_term(t: TermInputs) -> Array:
  """sum_l |A_l(h_s^l) - h_t^l|_1 through the learned 1x1 adapters (GAN Compression)."""
  return losses.feature_loss(t.adapt(t.features), t.teacher_features, (1.0,) * len(t.features))


def mmd_term(t: TermInputs) -> Array:
  """MMD^2 between the student's and the teacher's batch in the frozen teacher D's pooled
  features: matches distributions, so it can restore diversity a pixel loss averages away."""
  s = _flat_features(t.teacher_disc(t.image)[1])
  te = jax.lax.stop_gradient(_flat_features(t.teacher_disc(t.teacher_image)[1]))
  return mmd2(s, te)


# ---------------------------------------------------------------- config -> terms

def terms_from_config(dc: ml_collections.ConfigDict, g_loss: Callable[[Array], Array]) -> list[Term]:
  """The built-in terms `config.distill` asks for (those with a weight > 0). Each says
  whether it reads the student-side D (`needs_disc`): the adversarial term, and the D-feature
  and GCC terms when they compare the student-side D's activations."""
  adv_weight = weight(dc.adv_weight, dc.adv_schedule)
  if dc.warmup_steps and dc.adv_weight > 0:   # the adversarial term starts after a warm-up of the others
    base, gate = adv_weight, schedule(f"warmup:{dc.warmup_steps}")
    adv_weight = (lambda s: base(s) * gate(s)) if callable(base) else (lambda s: base * gate(s))
  spec = [   # name, weight, schedule, fn, balanced, reads: the student-side D, the teacher's D
      ("pixel", dc.pixel_weight, dc.pixel_schedule, pixel_term(dc.pixel_p), False, False, False),
      ("adv", adv_weight, "constant", adversarial_term(g_loss), dc.adv_balance, True, False),
      ("dfeat", dc.dfeat_weight, dc.dfeat_schedule,
       d_feature_term(dc.dfeat_d, dc.dfeat_layer_weights, dc.dfeat_layer_weighting), dc.dfeat_balance,
       dc.dfeat_d == "student", dc.dfeat_d == "teacher"),
      ("gfeat", dc.gfeat_weight, "constant", g_feature_term, False, False, False),
      ("content", dc.content_weight, "constant", content_term(dc.gcc_d), False, dc.gcc_d == "student",
       dc.gcc_d == "teacher"),
      ("style", dc.style_weight, "constant", style_term(dc.gcc_d), False, dc.gcc_d == "student",
       dc.gcc_d == "teacher"),
      ("mmd", dc.mmd_weight, "constant", mmd_term, dc.mmd_balance, False, True),
  ]
  terms = []
  for name, w, sched, fn, balanced, needs_disc, needs_teacher_disc in spec:
    if callable(w) or w > 0:
      terms.append(Term(name, fn, w if callable(w) else weight(w, sched), balanced, needs_disc, needs_teacher_disc))
  return terms


def total_loss(terms: Sequence[Term], inputs: TermInputs, pixel_p: int = 1) -> tuple[Array, dict[str, Any]]:
  """(sum_i w_i(step) b_i L_i, {name: L_i, name_weight: w_i b_i}) for the student's image."""
  values, total = {}, 0.0
  ref = None
  for term in terms:
    value = term.fn(inputs)
    w = term.weight_at(inputs.step)
    if term.balanced:
      if ref is None:
        ref = jnp.linalg.norm(jax.grad(lambda x: losses.pixel_loss(x, inputs.teacher_image, pixel_p))(inputs.image))
      own = jnp.linalg.norm(jax.grad(lambda x: term.fn(dataclasses.replace(inputs, image=x)))(inputs.image))
      w = w * jax.lax.stop_gradient(jnp.clip(ref / (own + 1e-4), 0.0, 1e4))
    values[term.name] = value
    values[f"{term.name}_weight"] = w
    total = total + w * value
  return total, values
