"""SNGAN ResNet teacher on celeb_a at 64 px (recipes.sngan_base: Miyato et al. 2018's CIFAR-10
recipe: ResNet G/D, spectral norm, hinge, n_critic 5, Adam 2e-4 (0, 0.9), batch 64, 50k steps).

    gandistill train-teacher --config experiments/configs/celeba64_sngan.py --workdir runs/celeba64_teacher

Needs a prepared TFDS `celeb_a` (data.data_dir; TFDS downloads only with data.download=True).
"""
from gandistill_jax import recipes


def get_config():
  return recipes.sngan_base("celeb_a", 64)
