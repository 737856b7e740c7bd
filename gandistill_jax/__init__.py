"""gandistill_jax: compress GAN generators by knowledge distillation, in JAX/Flax."""
__version__ = "0.1.0"
