"""The colour demo: `gandistill demo` on a folder of real colour images (32x32 RGB).

    python experiments/tools/install_emoji.py ~/data/emoji-google        # 3,786 PNGs from npm
    python experiments/tools/convert_inception_weights.py ~/.cache/gandistill_jax/inception_fid.npz
    gandistill demo --config experiments/configs/emoji_demo.py --workdir runs/emoji_demo

Any image folder works the same way: --set data.path=<folder> (class subfolders optional;
see gandistill_jax/data/folder.py). The Fashion-MNIST demo's recipe at 32x32x3: a DCGAN
teacher of width 32 (373k G parameters), students distilled (recipe `joint`, cut from the
teacher) and trained from scratch at 11.8x (w12, rank 8) and 44.1x (w6, rank 4) fewer.

Data: alpha composited on white, resized 64 -> 32 by area averaging, 10% of the images
held out (by the hash of their path) as the reference split.
Scores: InceptionV3 pool3 features (the converted FID weights) for FID, KID, precision/
recall and density/coverage, on `eval_num` generated samples against the held-out split.
"""
from gandistill_jax import recipes


def get_config():
  c = recipes.demo_base()
  c.data.update(name="emoji", source="folder", path="~/data/emoji-google", eval_fraction=0.1,
                background="white", resize_filter="area")
  c.model.update(image_size=32, channels=3)
  c.eval.update(features="inception", inception_weights="~/.cache/gandistill_jax/inception_fid.npz",
                inception_num=1000)
  # students (width, projection rank): 11.8x and 44.1x fewer parameters than the teacher at 32x32x3
  c.demo = {"teacher_steps": 5000, "student_steps": 3000, "eval_num": 1000, "students": ((12, 8), (6, 4))}
  return c
