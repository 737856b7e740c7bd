"""Named recipes and run configs: plain config pieces the configs, the demo and the
studies share (as big_vision keeps its shared config pieces), and nothing that runs.

    teacher_config(base, width, steps)        the teacher of a study
    distill_config(teacher, Student(...), steps, recipe, student_init)
    scratch_config(teacher, Student(...), steps)   the same student trained from scratch
    recipe(name, steps)                       a named recipe's `config.distill` settings
    demo_base(), sngan_base(dataset, size)    the base configs of the demo and the SNGAN runs
"""
from __future__ import annotations

import dataclasses

import ml_collections

from gandistill_jax import config as config_lib


def teacher_config(base: ml_collections.ConfigDict, width: int, steps_: int) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict(base.to_dict())
  c.model.update(g_width=width, d_width=width)
  c.train.steps = steps_
  return c


@dataclasses.dataclass(frozen=True)
class Student:
  """A student architecture: generator family, width, latent-projection rank."""
  family: str
  width: int
  proj_rank: int = 0

  @property
  def tag(self) -> str:
    return f"{'m' if self.family == 'mobile' else 'w'}{self.width}" + (f"r{self.proj_rank}" if self.proj_rank else "")


def student_model(base_model, student: Student) -> ml_collections.ConfigDict:
  m = ml_collections.ConfigDict(base_model.to_dict())
  m.update(family=student.family, g_width=student.width, proj_rank=student.proj_rank)
  return m


def recipe(name: str, steps_: int) -> dict:
  """The `config.distill` settings of a named recipe for a run of `steps_` steps.

    pixel     L1 to the teacher only (Aguinaldo et al. 2019), Adam 1e-3 as in the reference
    joint     L1 + 0.05 x non-saturating adversarial vs a student-size D on real data,
              after a pixel-only warm-up (this package's first recipe)
    tinygan   TinyGAN (Chang & Lu 2020): L1 between a student-side D's activations on student
              vs teacher images (layer weights ..., 1/4, 1), hinge adversarial 0.01, pixel
              L1 0.2 decayed to 0 by 2/3 of the run; D (spectral norm, hinge) takes the
              teacher's images as real and real data at weight 0.2
    gcc       GCC (Li et al. 2021): content + Gram losses on the frozen teacher D's
              activations, adapted G features, adversarial 1 vs a capacity-matched D; no pixel loss
    balanced  L1 + an adversarial term whose weight is balanced against it by gradient norms
              (VQGAN, Esser et al. 2021); D learns teacher vs student (real data at 0.2)
    mmd       L1 + MMD in the frozen teacher D's features (balanced), D-free
    joint_td  joint with the D initialised from the teacher's (Yu & Pool 2020)
    joint_mmd joint + the balanced MMD term
    joint_wd  joint against a fresh D of width 32 instead of the student's width: D is a
              training aid that is never deployed, so a tiny student need not get a tiny D
    joint_gfeat  joint + L1 between the student's features (through 1x1 adapters) and the
              teacher's at every generator stage (GAN Compression, Li et al. 2020)
  """
  tinygan_d = dict(d_loss="hinge", d_real="teacher", d_real_data_weight=0.2, d_spectral_norm=True)
  recipes = {
      "pixel": dict(adv_weight=0.0, g_lr=1e-3),
      "joint": dict(pixel_weight=1.0, adv_weight=0.05, warmup_steps=min(500, steps_ // 4)),
      "tinygan": dict(pixel_weight=0.2, pixel_schedule=f"decay:0:{max(1, 2 * steps_ // 3)}", dfeat_weight=1.0,
                      dfeat_d="student", dfeat_layer_weighting="tinygan", adv_weight=0.01, **tinygan_d),
      "gcc": dict(pixel_weight=0.0, content_weight=1.0, style_weight=1.0, gcc_d="teacher", gfeat_weight=1.0,
                  adv_weight=1.0),
      "balanced": dict(pixel_weight=1.0, adv_weight=1.0, adv_balance=True, d_real="teacher",
                       d_real_data_weight=0.2),
      "mmd": dict(pixel_weight=1.0, mmd_weight=1.0, mmd_balance=True),
  }
  recipes["joint_td"] = recipes["joint"] | dict(d_init="teacher")
  recipes["joint_mmd"] = recipes["joint"] | dict(mmd_weight=1.0, mmd_balance=True)
  recipes["joint_wd"] = recipes["joint"] | dict(d_width=32)
  recipes["joint_gfeat"] = recipes["joint"] | dict(gfeat_weight=1.0)
  if name not in recipes:
    raise ValueError(f"recipe {name!r} is unknown; use one of {sorted(recipes)}")
  return recipes[name]


RECIPES = ("pixel", "joint", "tinygan", "gcc", "balanced", "mmd", "joint_td", "joint_mmd", "joint_wd", "joint_gfeat")


def distill_config(teacher: ml_collections.ConfigDict, student: Student, steps_: int, recipe_name: str = "joint",
                   student_init: str = "random", **distill_kw) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict(teacher.to_dict())
  c.model = student_model(teacher.model, student)
  c.teacher_model = ml_collections.ConfigDict(teacher.model.to_dict())   # replaced by the teacher workdir's
  c.distill = config_lib.default_distill_config()
  c.distill.update(recipe(recipe_name, steps_) | dict(student_init=student_init) | distill_kw)
  c.train.steps = steps_
  return c


def scratch_config(teacher: ml_collections.ConfigDict, student: Student, steps_: int):
  """The student trained adversarially from scratch with the teacher's recipe and the
  teacher's discriminator: D is a training aid that is never deployed, so the baseline gets
  the same D capacity as the teacher (and the PyTorch reference's scratch run); a
  student-size D made the baseline needlessly weak (Fashion-MNIST w16, 4000 steps: FID 48.9
  with D width 16)."""
  c = ml_collections.ConfigDict(teacher.to_dict())
  c.model = student_model(teacher.model, student)
  c.train.steps = steps_
  return c


# The recipe the demo, the study and the distill config use, chosen by experiments/study/sweep.py
# on Fashion-MNIST (docs/results.md, "Choosing the recipe"): students cut from the teacher.
DEFAULT_RECIPE = "joint"
DEFAULT_INIT = "teacher"
# Demo students against its width-32 teacher (350k G params): 12x and 38x fewer parameters.
# Width buys more than projection rank at a fixed size (sweep shape50x), so the small one
# keeps width 8 and a rank-7 projection.
DEMO_STUDENTS = (Student("dcgan", 16, 12), Student("dcgan", 8, 7))


def sngan_base(dataset: str = "cifar10", image_size: int = 32) -> ml_collections.ConfigDict:
  """The SNGAN ResNet recipe (Miyato et al. 2018, CIFAR-10, appendix B.4): ResNet G and D
  with spectral norm, hinge loss, n_critic 5, Adam 2e-4 with betas (0, 0.9), batch 64,
  50k generator updates, z of 128 dims; EMA 0.9999 of G for sampling. Needs the TFDS
  dataset prepared (data.data_dir)."""
  c = config_lib.base_config()
  c.data.update(name=dataset, source="tfds")
  c.model.update(family="resnet", image_size=image_size, channels=3, g_width=64, d_width=64, latent_dim=128)
  c.loss.update(name="hinge", n_critic=5)
  c.optim.update(g_lr=2e-4, d_lr=2e-4, b1=0.0, b2=0.9)
  c.train.update(batch_size=64, steps=50000, ema_decay=0.9999, log_every=100, sample_every=2500, ckpt_every=2500)
  return c


def demo_base() -> ml_collections.ConfigDict:
  c = config_lib.base_config()
  c.model.update(image_size=28, channels=1, latent_dim=100, d_batch_norm=True)
  c.loss.reuse_fake = True
  c.train.update(batch_size=64, ema_decay=0.999, log_every=50, sample_every=1000, ckpt_every=1000)
  return c
