"""Distillation of a frozen teacher generator G_t into a small student G_s.

For the same z, the student minimises a weighted sum of (weights in config.distill):

  pixel     E_z |G_s(z) - G_t(z)|_p                              Aguinaldo et al. 2019
  adv       the non-saturating (or config.loss) generator loss against a discriminator
            trained on real data vs G_s, fresh or initialised from the teacher's D
            (Yu & Pool 2020); joint = alpha * pixel + (1 - alpha) * adv
  dfeat     sum_l w_l |D_t^l(G_s(z)) - D_t^l(G_t(z))|_1 on the frozen teacher D's
            activations                                          TinyGAN, Chang & Lu 2020
  gfeat     sum_l |A_l(h_s^l(z)) - h_t^l(z)|_1 with learned 1x1 adapters A_l from the
            student's to the teacher's channels                  GAN Compression, Li et al. 2020

The adversarial term starts after `warmup_steps` of the other terms. Online mode runs
G_t inside the step on fresh z; offline (black-box) mode reads stored (z, G_t(z)) pairs
from the batch. The teacher is frozen: it is in no optimizer, its outputs sit under
stop_gradient and it runs in inference mode (running statistics of its EMA weights).

The teacher is a workdir's network (architecture `config.teacher_model`, weights in the
state), a traceable function z -> images (an exported file, or the caller's), or only
stored pairs (gandistill_jax.teachers); `validate` refuses, in one line, a term that needs
what the teacher lacks (activations, a discriminator, an architecture to cut from).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from gandistill_jax import losses, models, objectives, prune, state as state_lib, steps, teachers
from gandistill_jax.tasks import Task

PyTree = Any


@flax.struct.dataclass
class DistillState:
  step: jax.Array
  s_params: PyTree        # {'generator': ..., 'adapters': ...}
  s_stats: PyTree
  s_opt: PyTree
  s_ema: PyTree           # EMA of s_params['generator']
  d_params: PyTree        # the adversarial discriminator ({} when adv_weight == 0)
  d_stats: PyTree
  d_opt: PyTree
  teacher_g: PyTree       # frozen {'params', 'batch_stats'} of a workdir teacher, else {}
  teacher_d: PyTree       # frozen {'params', 'batch_stats'} of its discriminator, else {}


class Adapters(nn.Module):
  """1x1 convolutions (Dense on the channel axis) from student to teacher channels."""
  channels: tuple[int, ...]

  @nn.compact
  def __call__(self, features):
    return [nn.Dense(c, name=f"adapter_{i}")(f) for i, (c, f) in enumerate(zip(self.channels, features))]


def distill_latent(rng: jax.Array, step, batch: int, latent_dim: int) -> jax.Array:
  """The z an online step draws; `dump-teacher` and the tests use the same function."""
  return steps.sample_latent(jax.random.fold_in(jax.random.fold_in(rng, step), 0), batch, latent_dim)


def _feature_shapes(module, variables, z):
  _, feats = jax.eval_shape(lambda v, z: module.apply(v, z, return_features=True), variables, z)
  return [f.shape for f in feats]


@dataclasses.dataclass(frozen=True)
class DistillSetup:
  """What a distill config resolves to, checked (validate): the loss terms, whether a
  student-side D is trained (some term `needs_disc`), that D's model config and its loss."""
  terms: tuple[objectives.Term, ...]
  use_disc: bool
  d_model: ml_collections.ConfigDict
  d_loss: ml_collections.ConfigDict


def validate(config: ml_collections.ConfigDict, extra_terms: Sequence[objectives.Term] = ()) -> DistillSetup:
  """The DistillSetup of a distill config, or a ValueError naming the key that is wrong."""
  dc = config.distill
  network = dc.teacher_kind == "workdir"
  if dc.teacher_kind not in teachers.KINDS:
    raise ValueError(f"distill.teacher_kind={dc.teacher_kind!r} is unknown; use one of {', '.join(teachers.KINDS)}")
  if network and "teacher_model" not in config:
    raise ValueError("the distill config has no teacher_model; it is recorded from the teacher: use "
                     "gandistill_jax.distill_student(config, teacher, workdir) or `gandistill distill --teacher`")
  d_cfg = ml_collections.ConfigDict((config.teacher_model if network else config.model).to_dict())
  if dc.d_init == "fresh":
    d_cfg.d_width = dc.d_width or config.model.g_width
    if dc.d_spectral_norm:
      d_cfg.update(d_spectral_norm=True, d_batch_norm=False)
  elif dc.d_init != "teacher":
    raise ValueError(f"distill.d_init={dc.d_init!r} is unknown; use 'fresh' or 'teacher'")
  if dc.d_real not in ("data", "teacher"):
    raise ValueError(f"distill.d_real={dc.d_real!r} is unknown; use 'data' (D learns real vs student) or "
                     f"'teacher' (D learns teacher vs student, TinyGAN)")
  d_loss_cfg = ml_collections.ConfigDict(config.loss.to_dict())
  if dc.d_loss:
    d_loss_cfg.name = dc.d_loss
  terms = objectives.terms_from_config(dc, losses.adversarial(d_loss_cfg.name).g_loss) + list(extra_terms)
  if not terms:
    raise ValueError("the distill config asks for no loss term; give one of distill.pixel_weight, "
                     "adv_weight, dfeat_weight, gfeat_weight, content_weight, style_weight or mmd_weight a value > 0")
  names = [t.name for t in terms]
  if len(set(names)) != len(names):
    raise ValueError(f"distill terms must have distinct names; got {names}")
  if dc.mode not in ("online", "offline"):
    raise ValueError(f"distill.mode={dc.mode!r} is unknown; use 'online' or 'offline'")
  if dc.mode == "offline" and dc.gfeat_weight:
    raise ValueError("distill.gfeat_weight needs the teacher's activations, which offline mode does not "
                     "have; use distill.mode='online'")
  if dc.student_init not in ("random", "teacher"):
    raise ValueError(f"distill.student_init={dc.student_init!r} is unknown; use 'random' or 'teacher'")
  if dc.teacher_kind == "pairs" and dc.mode != "offline":
    raise ValueError("a pairs teacher is stored (z, image) pairs: it needs distill.mode='offline'")
  lacks = _what_the_teacher_lacks(config, terms)
  if lacks:
    raise ValueError(f"{_teacher_name(dc)} cannot give what this config asks: "
                     + "; ".join(f"{what} ({fix})" for what, fix in lacks)
                     + f"{'' if network else '; or distil from a workdir teacher'}")
  return DistillSetup(tuple(terms), any(t.needs_disc for t in terms), d_cfg, d_loss_cfg)


def _teacher_name(dc) -> str:
  return {"workdir": "this teacher (a generator without its discriminator)",
          "exported": "an exported teacher (images only)", "function": "a function teacher (images only)",
          "pairs": "a pairs teacher (stored images only)"}[dc.teacher_kind]


def _what_the_teacher_lacks(config, terms) -> list[tuple[str, str]]:
  """(what the config asks of the teacher that it cannot give, the setting that drops it)."""
  dc = config.distill
  network, has_d = dc.teacher_kind == "workdir", dc.teacher_kind == "workdir" and dc.teacher_has_d
  wants = [(not network and dc.gfeat_weight > 0, "distill.gfeat_weight reads its activations",
            "set distill.gfeat_weight=0"),
           (not network and dc.student_init == "teacher", "distill.student_init='teacher' cuts the student from its "
            "weights", "set distill.student_init=random"),
           (not has_d and dc.d_init == "teacher" and any(t.needs_disc for t in terms),
            "distill.d_init='teacher' starts the student-side D from its discriminator", "set distill.d_init=fresh")]
  wants += [(not has_d, f"the {t.name!r} term reads its discriminator",
             f"set distill.{t.name}_weight=0" if f"{t.name}_weight" in dc else "leave the term out")
            for t in terms if t.needs_teacher_disc]
  return [(what, fix) for lacking, what, fix in wants if lacking]


def _teacher_network(config, teacher: dict | None, rng: jax.Array) -> dict:
  """{'g': ..., 'd': ...} of a workdir teacher (copied: the jitted step donates the state,
  and the caller's teacher must survive it), or same-shape placeholders that a restore
  overwrites; {} for parts the teacher does not have."""
  if config.distill.teacher_kind != "workdir":
    return {"g": {}, "d": {}}
  if teacher:
    return {"g": jax.tree.map(jnp.copy, teacher["g"]),
            "d": jax.tree.map(jnp.copy, teacher["d"]) if teacher.get("d") is not None else {}}
  t_model = config.teacher_model
  g = models.init_variables(models.build_generator(t_model), rng, jnp.zeros((2, t_model.latent_dim)))
  d = models.init_variables(models.build_discriminator(t_model), rng, jnp.zeros((2,) + models.sample_shape(t_model))) \
      if config.distill.teacher_has_d else {}
  return {"g": g, "d": d}


def init_distill_state(config: ml_collections.ConfigDict, setup: DistillSetup, s_tx, d_tx, rng: jax.Array,
                       teacher: dict | None = None) -> DistillState:
  """A fresh DistillState: the student (random, or cut from the teacher), its EMA, the
  1x1 adapters of the G-feature term, the student-side D where a term needs one, and a
  workdir teacher's frozen networks (`teacher` = {'g', 'd'}, copied; None: placeholders)."""
  dc, latent = config.distill, config.model.latent_dim
  s_gen, disc = models.build_generator(config.model), models.build_discriminator(setup.d_model)
  z0 = jnp.zeros((2, latent))
  k_s, k_a, k_d, k_t = jax.random.split(rng, 4)
  t_vars = _teacher_network(config, teacher, k_t)
  s_vars = models.init_variables(s_gen, k_s, z0)
  if dc.student_init == "teacher":
    s_vars = prune.student_from_teacher(t_vars["g"], config.teacher_model, config.model, s_vars, dc.prune_by)
  adapters = {}
  if dc.gfeat_weight:
    t_shapes = _feature_shapes(models.build_generator(config.teacher_model), t_vars["g"], z0)
    s_shapes = _feature_shapes(s_gen, s_vars, z0)
    if [s[:-1] for s in s_shapes] != [t[:-1] for t in t_shapes]:
      raise ValueError(f"distill.gfeat_weight needs student and teacher features of the same sizes; "
                       f"student {s_shapes}, teacher {t_shapes}")
    adapters = Adapters(tuple(t[-1] for t in t_shapes)).init(k_a, [jnp.zeros(s) for s in s_shapes])["params"]
  s_params = {"generator": s_vars["params"], "adapters": adapters}
  if not setup.use_disc:
    d_vars = {"params": {}, "batch_stats": {}}
  elif dc.d_init == "teacher":
    d_vars = jax.tree.map(jnp.copy, t_vars["d"])
  else:
    d_vars = models.init_variables(disc, k_d, jnp.zeros((2,) + models.sample_shape(config.model)))
  return DistillState(
      step=jnp.zeros((), jnp.int32), s_params=s_params, s_stats=s_vars["batch_stats"],
      s_opt=s_tx.init(s_params), s_ema=jax.tree.map(jnp.copy, s_vars["params"]),
      d_params=d_vars["params"], d_stats=d_vars["batch_stats"],
      d_opt=d_tx.init(d_vars["params"]) if setup.use_disc else {},
      teacher_g=t_vars["g"], teacher_d=t_vars["d"])


def _refusing(message: str) -> Callable:
  """A stand-in for a part of the teacher that is not there: tracing it raises `message`."""
  def missing(*args, **kwargs):
    raise teachers.TeacherError(message)
  return missing


def make_distill_step(config: ml_collections.ConfigDict, setup: DistillSetup, s_tx, d_tx,
                      teacher_fn: Callable | None = None) -> Callable:
  """The pure distill step (state, batch, rng) -> (state, metrics): the frozen teacher's
  images (online: for fresh z, from the workdir teacher's network or `teacher_fn`; offline:
  the batch's stored pairs), the student-side D's update where a term needs one, then the
  student's update on the sum of the terms and its EMA. The teacher is under
  stop_gradient, in no optimizer, its batch statistics unused."""
  dc, latent = config.distill, config.model.latent_dim
  network = dc.teacher_kind == "workdir"
  if dc.mode == "online" and not network and teacher_fn is None:
    teacher_fn = _refusing(f"this run learns from {teachers.article(dc.teacher_kind)} teacher ({dc.teacher_dir or 'a function'}), "
                           f"which was not given: pass it again to train")
  t_gen = models.build_generator(config.teacher_model) if network else None
  t_disc = models.build_discriminator(config.teacher_model) if network and dc.teacher_has_d else None
  s_gen, disc = models.build_generator(config.model), models.build_discriminator(setup.d_model)
  dtype = config.train.compute_dtype
  d_update = steps.make_d_update(disc, d_tx, setup.d_loss, dtype)
  terms, use_disc, real_weight = setup.terms, setup.use_disc, dc.d_real_data_weight

  def step(state: DistillState, batch: dict, rng: jax.Array):
    key = jax.random.fold_in(rng, state.step)
    if dc.mode == "online":
      b = batch["image"].shape[0]
      z = distill_latent(rng, state.step, b, latent)
      if network:
        t_img, t_feats = steps.apply_model(t_gen, state.teacher_g["params"], state.teacher_g.get("batch_stats"), z,
                                           train=False, compute_dtype=dtype, return_features=True)[0]
      else:
        t_img, t_feats = jnp.asarray(teacher_fn(z), jnp.float32), None
    else:
      z, t_img, t_feats = batch["z"], batch["teacher"], None
    t_img = jax.lax.stop_gradient(t_img)
    t_feats = jax.lax.stop_gradient(t_feats)
    g_fwd = lambda p: steps.apply_model(s_gen, p["generator"], state.s_stats, z, train=True, compute_dtype=dtype,
                                        return_features=True)
    ((img, feats), s_stats), g_vjp = jax.vjp(g_fwd, state.s_params)
    d_params, d_stats, d_opt, metrics = state.d_params, state.d_stats, state.d_opt, {}
    if use_disc:
      fake = jax.lax.stop_gradient(img)
      reals = [(t_img, 1.0)] + ([(batch["image"], real_weight)] if real_weight else []) \
          if dc.d_real == "teacher" else [(batch["image"], 1.0)]
      d_params, d_stats, d_opt, metrics = d_update(d_params, d_stats, d_opt, reals, fake,
                                                   jax.random.fold_in(key, 1))
    frozen_d = (lambda x: steps.apply_model(t_disc, state.teacher_d["params"], state.teacher_d.get("batch_stats"), x,
                                            train=False, compute_dtype=dtype, return_features=True)[0]) \
        if t_disc is not None else _refusing("a distill term reads the teacher's discriminator, which this teacher "
                                             "does not have (a Term with needs_teacher_disc=True is refused up front)")
    student_d = ((lambda x: steps.apply_disc(disc, d_params, d_stats, x, compute_dtype=dtype, return_features=True))
                 if use_disc else None)
    adapt = lambda p: (lambda f: Adapters(tuple(t.shape[-1] for t in t_feats)).apply({"params": p}, f))

    def loss_fn(img, feats, adapters):
      inputs = objectives.TermInputs(
          step=state.step, z=z, image=img, features=feats, teacher_image=t_img, teacher_features=t_feats,
          real=batch["image"], disc=student_d, teacher_disc=frozen_d, adapt=adapt(adapters) if dc.gfeat_weight else None)
      return objectives.total_loss(terms, inputs, dc.pixel_p)

    (loss, values), (d_img, d_feats, d_adapters) = jax.value_and_grad(loss_fn, argnums=(0, 1, 2), has_aux=True)(
        img, feats, state.s_params["adapters"])
    (grads,) = g_vjp(((d_img, d_feats), jax.tree.map(jnp.zeros_like, s_stats)))
    grads = {"generator": grads["generator"], "adapters": d_adapters}
    updates, s_opt = s_tx.update(grads, state.s_opt, state.s_params)
    s_params = optax.apply_updates(state.s_params, updates)
    s_ema = steps.update_ema(s_params["generator"], state.s_ema, state.step, config.train)
    new = state.replace(step=state.step + 1, s_params=s_params, s_stats=s_stats, s_opt=s_opt, s_ema=s_ema,
                        d_params=d_params, d_stats=d_stats, d_opt=d_opt)
    return new, metrics | values | {"loss": loss}

  return step


def distill_task(config: ml_collections.ConfigDict, teacher=None,
                 extra_terms: Sequence[objectives.Term] = ()) -> Task:
  """The distill task: `config.model` is the student, `config.distill.teacher_*` (and for
  a workdir teacher `config.teacher_model`) what teachers.record wrote of the teacher.

  `teacher`: a teachers.Teacher; or for a workdir teacher {'g': variables, 'd': variables
  or None} (None: same-shape placeholders, which a restore then overwrites); or for an
  exported or function teacher its traceable function z -> images (None: a task that can
  restore and sample, not train). `extra_terms` (objectives.Term) are added to the terms
  the config asks for; a resumed run must be given the same ones."""
  if isinstance(teacher, teachers.Teacher):
    teacher = teacher.variables if teacher.kind == "workdir" else teacher.fn
  variables, teacher_fn = (None, teacher) if callable(teacher) else (teacher, None)
  setup = validate(config, extra_terms)
  s_tx = state_lib.adam(config.distill.g_lr or config.optim.g_lr, config.optim)
  d_tx = state_lib.adam(config.optim.d_lr, config.optim)
  s_gen = models.build_generator(config.model)

  def generator_variables(state: DistillState):
    stats = steps.recompute_batch_stats(s_gen, state.s_ema, state.s_stats, jax.random.key(config.seed),
                                        config.model.latent_dim)
    return {"params": state.s_ema, "batch_stats": stats}

  return Task(kind="distill", config=config, generator=s_gen,
              init=lambda rng: init_distill_state(config, setup, s_tx, d_tx, rng, variables),
              step=make_distill_step(config, setup, s_tx, d_tx, teacher_fn), generator_variables=generator_variables,
              saved_networks=lambda state: {"generator": generator_variables(state)} | (
                  {"teacher": state.teacher_g} if config.distill.teacher_kind == "workdir" else {}),
              global_batch=config.train.batch_size)


def dump_teacher(generate: Callable, rng: jax.Array, num: int, latent_dim: int, batch: int = 500):
  """(z, G_t(z)) for `num` fresh z, as float32 numpy arrays: the offline (black-box) set.
  `generate`: the teacher, z -> images (traceable)."""
  apply = jax.jit(generate)
  zs = np.asarray(steps.sample_latent(rng, num, latent_dim))
  return zs, np.concatenate([np.asarray(apply(zs[i:i + batch])) for i in range(0, num, batch)])
