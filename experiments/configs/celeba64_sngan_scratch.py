"""The baseline for celeba64: the width-16 ResNet student trained from scratch with the
SNGAN recipe and the teacher's discriminator.

    gandistill train-scratch --config experiments/configs/celeba64_sngan_scratch.py \
        --workdir runs/celeba64_scratch_w16 [--set model.g_width=8]
"""
from gandistill_jax import recipes


def get_config():
  return recipes.scratch_config(recipes.sngan_base("celeb_a", 64), recipes.Student("resnet", 16), 30000)
