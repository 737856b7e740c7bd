"""Distill the cifar10 SNGAN teacher into a ResNet student of width 16 (a quarter of the
teacher's channels in every stage, ~16x fewer parameters) with the default recipe, from a random init (cutting the
student from the teacher is implemented for DCGAN only).

    gandistill distill --config experiments/configs/cifar10_sngan_distill.py \
        --teacher runs/cifar10_teacher --workdir runs/cifar10_distill_w16 [--set model.g_width=8]
"""
from gandistill_jax import recipes


def get_config():
  teacher = recipes.sngan_base("cifar10", 32)
  return recipes.distill_config(teacher, recipes.Student("resnet", 16), 30000, recipes.DEFAULT_RECIPE, "random")
