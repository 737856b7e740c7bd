"""gandistill_jax: compress GAN generators by knowledge distillation, in JAX/Flax.

The top-level calls (imported on first use, so `load_generator` of an exported file
needs only jax):

    train_teacher(config, workdir)            a teacher GAN, adversarially
    distill_student(config, teacher_dir, workdir)   a student from a trained teacher
    train_scratch(config, workdir)            the same student from scratch (the baseline)
    evaluate(workdir | generator | images)    FID, KID, precision/recall, ...
    fid(images_a, images_b)                   one number
    load_generator(exported_file | workdir)   z -> images, for deployment

Models: gandistill_jax.models (registries, the generator/discriminator protocol);
objectives: gandistill_jax.objectives (composable distillation terms).
"""
__version__ = "0.1.0"

_API = ("train_teacher", "train_scratch", "distill_student", "evaluate", "fid")
__all__ = _API + ("load_generator",)


def load_generator(path_or_workdir: str, which: str = "auto"):
  """A callable z -> images from an exported file (needs only jax) or a workdir.

  See gandistill_jax.export.load_generator.
  """
  from gandistill_jax.export import load_generator as load
  return load(path_or_workdir, which)


def __getattr__(name: str):
  if name in _API:
    from gandistill_jax import api
    return getattr(api, name)
  raise AttributeError(f"module 'gandistill_jax' has no attribute {name!r}")
