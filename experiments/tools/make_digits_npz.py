"""The second dataset: scikit-learn's 8x8 handwritten digits (1,797 images, UCI ML
hand-written digits), upscaled to 28x28, as an npz source.

    pip install scikit-learn      # experiment-only; the package does not need it
    python experiments/tools/make_digits_npz.py runs/digits.npz
    gandistill demo --workdir runs/demo_digits --set data.source=npz --set data.name=digits \
        --set data.path=runs/digits.npz

Pixels 0..16 are scaled to 0..255 and resized bilinearly (antialiased) to 28x28; a fixed
permutation (seed 0) puts 1,497 images in `train` and 300 in `test`.
"""
import sys

import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits


def main(out: str) -> None:
  digits = load_digits()
  images = (digits.images * (255.0 / 16.0))[..., None].astype(np.float32)
  big = tf.image.resize(images, (28, 28), method="bilinear", antialias=True).numpy()
  big = np.clip(np.round(big), 0, 255).astype(np.uint8)
  order = np.random.default_rng(0).permutation(len(big))
  train, test = order[:-300], order[-300:]
  np.savez_compressed(out, train_images=big[train, ..., 0], train_labels=digits.target[train].astype(np.int64),
                      test_images=big[test, ..., 0], test_labels=digits.target[test].astype(np.int64))
  print(f"wrote {out}: train {len(train)}, test {len(test)} images of 28x28")


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else "digits.npz")
