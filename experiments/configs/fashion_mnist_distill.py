"""Distill the Fashion-MNIST teacher into a DCGAN student with the default recipe.

    gandistill distill --config experiments/configs/fashion_mnist_distill.py \
        --teacher runs/teacher --workdir runs/distill_w16 --set model.g_width=16

The recipe (recipes.DEFAULT_RECIPE, chosen by experiments/study/sweep.py): the student is cut from
the teacher (the teacher's strongest channels, its latent projection by truncated SVD),
then trained on L1 to the teacher plus 0.05 x a non-saturating adversarial term against a
student-size D on real data, after a 500-step pixel-only warm-up. Students of the study:
widths 32 and 16 full rank, `--set model.g_width=24 --set model.proj_rank=16` (13x
fewer parameters) and `model.g_width=8, proj_rank=12` (56x).

`model` is the student; the teacher's architecture is read from its workdir (recorded as
`teacher_model` in the run's config.json).
"""
from gandistill_jax import recipes
from gandistill_jax.config import base_config
from gandistill_jax.config import default_distill_config


def get_config():
  c = base_config()
  c.data.name = "fashion_mnist"
  c.model.update(image_size=28, channels=1, g_width=16, proj_rank=0, latent_dim=100)
  c.distill = default_distill_config()
  c.distill.update(recipes.recipe(recipes.DEFAULT_RECIPE, 4000), student_init=recipes.DEFAULT_INIT)
  c.train.update(batch_size=64, steps=4000, ema_decay=0.999, log_every=50, sample_every=500, ckpt_every=500)
  return c
