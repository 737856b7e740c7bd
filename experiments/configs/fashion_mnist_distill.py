"""Distill the Fashion-MNIST teacher into a DCGAN student (joint pixel + adversarial).

    gandistill distill --config experiments/configs/fashion_mnist_distill.py \
        --teacher runs/teacher --workdir runs/distill_w16 --set student.g_width=16

Student widths of the study: 32, 16, 8 and 4 (`--set student.g_width=W`); from width 8
down the latent projection is factorised (student.proj_rank) to keep students small.
"""
import ml_collections

from gandistill_jax.config import base_config
from gandistill_jax.distill import default_distill_config

STUDENT_WIDTHS = (32, 16, 8, 4)


def get_config():
  c = base_config()
  c.data.name = "fashion_mnist"
  c.model.update(image_size=28, channels=1, g_width=64, d_width=64, latent_dim=100)
  c.student = ml_collections.ConfigDict(c.model.to_dict())
  c.student.update(g_width=16, proj_rank=0)
  c.teacher_model = ml_collections.ConfigDict(c.model.to_dict())  # replaced by the teacher's at run time
  c.distill = default_distill_config()
  c.distill.teacher_dir = ""
  # Joint objective. The adversarial term (~0.7-4) would swamp the L1 pixel term (~0.1-0.3),
  # so it is weighted down, starts after a pixel-only warm-up, and its D is student-sized.
  c.distill.update(pixel_weight=1.0, pixel_p=1, adv_weight=0.05, d_init="fresh", d_width=0, warmup_steps=500)
  c.train.update(batch_size=64, steps=4000, ema_decay=0.999, log_every=50, sample_every=500, ckpt_every=500)
  return c
