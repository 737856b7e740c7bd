"""Students that start from the teacher: channel selection and a truncated-SVD projection.

A DCGAN student of width w is the teacher (width W, same depth) with, in every stage,
the k = c * w / W channels the teacher relies on most kept and the rest removed, the
pruning-then-distillation recipe of GAN Slimming (Wang et al. 2020) and CAGC (Liu et al.
2021). Channels are ranked by

  bn_scale     |gamma_c| of the batch norm after the layer (network slimming, Liu et al. 2017)
  l1           sum |K[..., c]| of the kernel that produces channel c (Li et al. 2017)
  sensitivity  how much the teacher's output moves when channel c alone is removed:
               E_z mean |G(z) - G_{-c}(z)|, with G_{-c} the teacher whose batch norm gives
               channel c gamma_c = beta_c = 0 (so ReLU passes 0: the channel is gone), on
               SENSITIVITY_BATCH fixed z in eval mode; the output-space counterpart of the
               Taylor criterion (Molchanov et al. 2017), measured exactly rather than to
               first order

and the kept indices stay in the teacher's order. A `mobile` student (models/mobile.py)
shares the DCGAN's projection z -> s0 x s0 x c0 and the batch norm after it, so it takes
those from the teacher the same way (its inverted-residual blocks have no teacher
counterpart and keep their init). The latent projection z -> s0 x s0 x c0
keeps the kept channels' columns and biases; a student with `proj_rank` r factorises it by truncated
SVD, P ~ (U_r S_r^1/2)(S_r^1/2 V_r^T), the best rank-r approximation in Frobenius norm
(Eckart-Young). With w = W and a full-rank projection the student is the teacher exactly.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from gandistill_jax import models
from gandistill_jax.models.dcgan import projection_matrix

PRUNE_BY = ("bn_scale", "l1", "sensitivity")
SENSITIVITY_BATCH = 64


def select_channels(scores: jax.Array, keep: int) -> jax.Array:
  """Indices of the `keep` largest scores, in increasing index order (ties: lower index)."""
  return jnp.sort(jnp.argsort(-scores, stable=True)[:keep])


def low_rank(kernel: jax.Array, rank: int) -> tuple[jax.Array, jax.Array]:
  """(A, B) with A @ B the best rank-`rank` approximation of `kernel` (truncated SVD)."""
  u, s, vt = jnp.linalg.svd(kernel, full_matrices=False)
  root = jnp.sqrt(s[:rank])
  return u[:, :rank] * root, root[:, None] * vt[:rank]


def _check(teacher_cfg, student_cfg) -> None:
  if teacher_cfg.family != "dcgan" or student_cfg.family not in ("dcgan", "mobile"):
    raise ValueError(f"distill.student_init='teacher' needs a DCGAN teacher and a DCGAN or mobile student; "
                     f"teacher model.family={teacher_cfg.family!r}, student {student_cfg.family!r}; "
                     f"use distill.student_init='random'")
  for key in ("image_size", "channels", "latent_dim", "num_up"):
    if teacher_cfg.get(key, 0) != student_cfg.get(key, 0):
      raise ValueError(f"distill.student_init='teacher' needs the student's {key} to be the teacher's "
                       f"({teacher_cfg.get(key, 0)}), got {student_cfg.get(key, 0)}")
  if teacher_cfg.g_proj_bias and not student_cfg.g_proj_bias:
    raise ValueError("distill.student_init='teacher' cannot drop the teacher's projection bias; "
                     "give the student model.g_proj_bias=True (the default)")
  if student_cfg.g_width > teacher_cfg.g_width:
    raise ValueError(f"distill.student_init='teacher' prunes the teacher; student.g_width={student_cfg.g_width} "
                     f"must be at most the teacher's {teacher_cfg.g_width}")


def _sensitivity(teacher_vars: dict, teacher_cfg, layer: int) -> jax.Array:
  """E_z mean |G(z) - G_{-c}(z)| for every channel c of the teacher's BatchNorm_<layer>."""
  gen = models.build_generator(teacher_cfg)
  z = jax.random.normal(jax.random.key(0), (SENSITIVITY_BATCH, teacher_cfg.latent_dim))
  full = gen.apply(teacher_vars, z)
  name = f"BatchNorm_{layer}"
  bn = teacher_vars["params"][name]

  def drop(c):
    gone = {k: jnp.asarray(v).at[c].set(0.0) for k, v in bn.items()}
    out = gen.apply({**teacher_vars, "params": {**teacher_vars["params"], name: gone}}, z)
    return jnp.abs(out - full).mean()
  return jax.lax.map(drop, jnp.arange(bn["scale"].shape[0]), batch_size=16)


def channel_scores(teacher_vars: dict, teacher_cfg, layer: int, prune_by: str) -> jax.Array:
  """How much the teacher relies on each channel of stage `layer` (higher: kept first)."""
  tp = teacher_vars["params"]
  if prune_by == "bn_scale":
    return jnp.abs(tp[f"BatchNorm_{layer}"]["scale"])
  if prune_by == "sensitivity":
    return _sensitivity(teacher_vars, teacher_cfg, layer)
  if layer == 0:
    proj = projection_matrix(tp)
    return jnp.abs(proj.reshape(proj.shape[0], -1, tp["BatchNorm_0"]["scale"].shape[0])).sum((0, 1))
  return jnp.abs(tp[f"UpConv_{layer - 1}"]["kernel"]).sum((0, 1, 2))


def student_from_teacher(teacher_vars: dict, teacher_cfg, student_cfg, student_vars: dict,
                         prune_by: str = "bn_scale") -> dict:
  """The student's {'params', 'batch_stats'} cut from the teacher's (a mobile student: its
  projection and first batch norm; the rest as in `student_vars`); `student_vars` (a fresh
  init of the student) gives the target shapes and is checked against the result. Pure
  jax.numpy: it runs inside the (jitted, abstractly evaluated) distill init."""
  _check(teacher_cfg, student_cfg)
  if prune_by not in PRUNE_BY:
    raise ValueError(f"distill.prune_by={prune_by!r} is unknown; use one of {PRUNE_BY}")
  tp, ts = teacher_vars["params"], teacher_vars["batch_stats"]
  sp_shape = jax.tree.map(jnp.shape, student_vars["params"])
  n_bn = sum(1 for k in tp if k.startswith("BatchNorm_"))
  n_up = n_bn                                   # UpConv_0 .. UpConv_{n_bn - 1}; the last is the output layer
  whole = student_cfg.family == "dcgan"        # a mobile student takes the projection and BatchNorm_0 only
  kept = [select_channels(channel_scores(teacher_vars, teacher_cfg, i, prune_by),
                          sp_shape[f"BatchNorm_{i}"]["scale"][0]) for i in range(n_bn if whole else 1)]

  params, stats = dict(student_vars["params"]), dict(student_vars["batch_stats"])
  proj = projection_matrix(tp)
  c0 = tp["BatchNorm_0"]["scale"].shape[0]
  p = proj.reshape(proj.shape[0], -1, c0)[:, :, kept[0]].reshape(proj.shape[0], -1)
  if "proj_low_rank" in sp_shape:
    a, b = low_rank(p, sp_shape["proj_low_rank"]["kernel"][1])
    params["proj_low_rank"], params["proj"] = {"kernel": a}, {"kernel": b}
  else:
    params["proj"] = {"kernel": p}
  if "bias" in sp_shape["proj"]:   # a teacher without one (model.g_proj_bias=False) has a zero bias
    bias = tp["proj"].get("bias", jnp.zeros(proj.shape[1], proj.dtype))
    params["proj"]["bias"] = bias.reshape(-1, c0)[:, kept[0]].reshape(-1)
  for i, idx in enumerate(kept):
    params[f"BatchNorm_{i}"] = {k: v[idx] for k, v in tp[f"BatchNorm_{i}"].items()}
    stats[f"BatchNorm_{i}"] = {k: v[idx] for k, v in ts[f"BatchNorm_{i}"].items()}
  for j in range(n_up if whole else 0):
    k = tp[f"UpConv_{j}"]["kernel"][:, :, kept[j]]
    if j + 1 < n_up:
      k = k[..., kept[j + 1]]
    params[f"UpConv_{j}"] = {"kernel": k} | ({"bias": tp[f"UpConv_{j}"]["bias"]} if "bias" in tp[f"UpConv_{j}"] else {})
  got = jax.tree.map(jnp.shape, params)
  if got != sp_shape:
    raise ValueError(f"pruned teacher parameters {got} do not match the student's {sp_shape}")
  # copies: the student must share no buffer with the teacher (train steps donate the state)
  return jax.tree.map(jnp.copy, {"params": params, "batch_stats": stats})
