"""SNGAN ResNet teacher on cifar10 at 32 px (recipes.sngan_base: Miyato et al. 2018's CIFAR-10
recipe: ResNet G/D, spectral norm, hinge, n_critic 5, Adam 2e-4 (0, 0.9), batch 64, 50k steps).

    gandistill train-teacher --config experiments/configs/cifar10_sngan.py --workdir runs/cifar10_teacher

Needs a prepared TFDS `cifar10` (data.data_dir; TFDS downloads only with data.download=True).
"""
from gandistill_jax import recipes


def get_config():
  return recipes.sngan_base("cifar10", 32)
