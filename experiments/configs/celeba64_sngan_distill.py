"""Distill the celeba64 SNGAN teacher into a ResNet student of width 16 (a quarter of the
teacher's channels in every stage, ~16x fewer parameters) with the default recipe, from a random init (cutting the
student from the teacher is implemented for DCGAN only).

    gandistill distill --config experiments/configs/celeba64_sngan_distill.py \
        --teacher runs/celeba64_teacher --workdir runs/celeba64_distill_w16 [--set model.g_width=8]
"""
from gandistill_jax import recipes


def get_config():
  teacher = recipes.sngan_base("celeb_a", 64)
  return recipes.distill_config(teacher, recipes.Student("resnet", 16), 30000, recipes.DEFAULT_RECIPE, "random")
