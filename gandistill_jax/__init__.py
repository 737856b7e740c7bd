"""gandistill_jax: compress GAN generators by knowledge distillation, in JAX/Flax."""
__version__ = "0.1.0"


def load_generator(path_or_workdir: str, which: str = "auto"):
  """A callable z -> images from an exported file (needs only jax) or a workdir.

  See gandistill_jax.export.load_generator.
  """
  from gandistill_jax.export import load_generator as load
  return load(path_or_workdir, which)
