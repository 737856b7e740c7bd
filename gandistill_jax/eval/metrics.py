"""Sample-quality metrics on feature vectors (N, d). numpy/scipy do the linear algebra.

FID   Heusel et al. 2017: ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^{1/2})
KID   Binkowski et al. 2018: unbiased MMD^2 with k(x, y) = (x.y / d + 1)^3, averaged
      over random subsets, with its standard error
PR    improved precision and recall, Kynkäänniemi et al. 2019 (k-NN balls, k = 3)
D&C   density and coverage, Naeem et al. 2020 (k = 3)
IS    exp(E_x KL(p(y|x) || p(y))) on a domain classifier's logits (Salimans et al. 2016)
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
from scipy.special import log_softmax, softmax


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  f = np.asarray(features, np.float64)
  return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
  """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (the FID formula)."""
  with np.errstate(all="ignore"), warnings.catch_warnings():
    warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
  if not np.isfinite(covmean).all():  # singular product: regularise as pytorch-fid does
    eps = 1e-6 * np.eye(len(mu1))
    covmean = scipy.linalg.sqrtm((sigma1 + eps) @ (sigma2 + eps))
  covmean = covmean.real
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid(real_features, fake_features) -> float:
  return frechet_distance(*gaussian_stats(real_features), *gaussian_stats(fake_features))


def kid(real_features, fake_features, subsets: int = 50, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
  """(mean, standard error) of the unbiased polynomial-kernel MMD^2 over random subsets."""
  x, y = np.asarray(real_features, np.float64), np.asarray(fake_features, np.float64)
  m = min(subset_size, len(x), len(y))
  d = x.shape[1]
  rng = np.random.default_rng(seed)
  values = []
  for _ in range(subsets):
    a, b = x[rng.choice(len(x), m, replace=False)], y[rng.choice(len(y), m, replace=False)]
    kxx, kyy, kxy = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
    values.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
                  - 2 * kxy.mean())
  values = np.asarray(values)
  return float(values.mean()), float(values.std(ddof=1) / np.sqrt(subsets)) if subsets > 1 else 0.0


def _pairwise(a, b) -> np.ndarray:
  d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
  return np.sqrt(np.maximum(d, 0))


def _knn_radii(x, k: int) -> np.ndarray:
  """Distance from each point to its k-th nearest other point."""
  return np.partition(_pairwise(x, x), k, axis=1)[:, k]


def prdc(real_features, fake_features, k: int = 3) -> dict[str, float]:
  """Improved precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020)."""
  r, f = np.asarray(real_features, np.float64), np.asarray(fake_features, np.float64)
  r_radii, f_radii = _knn_radii(r, k), _knn_radii(f, k)
  d_rf = _pairwise(r, f)                         # (n_real, n_fake)
  inside_real = d_rf < r_radii[:, None]          # fake j inside real i's ball
  return {
      "precision": float(inside_real.any(0).mean()),
      "recall": float((d_rf < f_radii[None, :]).any(1).mean()),
      "density": float(inside_real.sum(0).mean() / k),
      "coverage": float((d_rf.min(1) < r_radii).mean()),
  }


def classifier_score(logits) -> float:
  """exp(E_x KL(p(y|x) || p(y))): the Inception Score computed on a domain classifier."""
  logp = log_softmax(np.asarray(logits, np.float64), axis=1)
  p_y = softmax(np.asarray(logits, np.float64), axis=1).mean(0)
  return float(np.exp(np.mean(np.sum(np.exp(logp) * (logp - np.log(p_y + 1e-12)), axis=1))))


def class_coverage(logits, num_classes: int, min_fraction: float = 0.1) -> dict:
  """Predicted-class histogram of generated samples: how many classes get at least
  `min_fraction` of their fair share, and the histogram's total-variation distance to uniform."""
  hist = np.bincount(np.asarray(logits).argmax(1), minlength=num_classes) / len(logits)
  return {"classes_covered": int((hist >= min_fraction / num_classes).sum()),
          "class_tv_to_uniform": float(0.5 * np.abs(hist - 1.0 / num_classes).sum())}
