"""The one-feature logistic curve that the router (its calibration) and the eval sets (a model's chance on a prompt
from how the other models did on it) both fit."""

from __future__ import annotations

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def fit(x: np.ndarray, y: np.ndarray, l2: float = 1e-2) -> tuple[float, float]:
    """Intercept and slope of P(y) = sigmoid(a + b x) by Newton's method; y may be a share in [0, 1] (a graded
    score). The slight L2 keeps them finite where the data are separable or all alike."""
    design = np.c_[np.ones_like(x), x]
    beta = np.zeros(2)
    for _ in range(50):
        p = sigmoid(design @ beta)
        gradient = design.T @ (y - p) - l2 * beta
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + l2 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        beta += step
        if np.abs(step).max() < 1e-8:
            break
    return float(beta[0]), float(beta[1])
