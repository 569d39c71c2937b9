"""EM-DD (Zhang and Goldman 2001): diverse density maximised by expectation-maximisation.

A hypothesis is a target point ``t`` and a scale ``s`` per feature; an instance ``x`` is positive with
probability ``exp(-sum_k s_k^2 (x_k - t_k)^2)``, and a bag is as positive as its most likely instance.
Each start (every instance of ``n_starts`` positive bags, scales ``initial_scale / sqrt(d)`` on
standardised features) alternates an E-step, which picks every bag's
most likely instance, and an M-step, which maximises the diverse density of those instances
(L-BFGS on its negative log); the start with the highest diverse density on the training bags wins.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize

from .mil import MILBase
from .registry import BASELINES, IMGS, IMGS_ATTRS, Baseline

_EPS = 1e-12


def _distances(x: np.ndarray, t: np.ndarray, s: np.ndarray) -> np.ndarray:
    return ((s**2) * (x - t) ** 2).sum(-1)


def negative_log_dd(theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """-log DD of the chosen instances ``x`` (one per bag) with bag labels ``y``, and its gradient in
    ``theta = [t, s]``, computed stably: -log(1 - exp(-d)) = -log(-expm1(-d))."""
    d = x.shape[1]
    t, s = theta[:d], theta[d:]
    diff = x - t
    distance = np.maximum(((s**2) * diff**2).sum(1), _EPS)
    positive = y == 1
    loss = float(distance[positive].sum() - np.log(-np.expm1(-distance[~positive])).sum())
    # d(-log p)/d distance = 1 for positive bags; d(-log(1 - p))/d distance = -1 / expm1(d) for negative ones
    with np.errstate(over="ignore"):  # a far instance: expm1 overflows to inf, its weight to 0, as it should
        weight = np.where(positive, 1.0, -1.0 / np.expm1(distance))
    grad_t = (weight[:, None] * (-2 * s**2 * diff)).sum(0)
    grad_s = (weight[:, None] * (2 * s * diff**2)).sum(0)
    return loss, np.concatenate([grad_t, grad_s])


class EMDD(MILBase):
    """EM-DD over instance features; the bag score is the logit of its most likely instance's probability,
    so uncalibrated predictions cut at 0.5 as the original method does."""

    def __init__(
        self,
        n_starts: int = 3,
        max_iter: int = 10,
        initial_scale: float = 1.0,
        max_instances: int | None = None,
        calibrate: bool = False,
        random_state: int = 0,
    ):
        self.n_starts, self.max_iter, self.max_instances = n_starts, max_iter, max_instances
        self.initial_scale = initial_scale
        self.calibrate, self.random_state = calibrate, random_state

    def _fit_scaled(self, bags: list[np.ndarray], y: np.ndarray) -> None:
        rng = np.random.default_rng(self.random_state)
        positives = [b for b, label in zip(bags, y) if label == 1]
        chosen_bags = rng.choice(len(positives), min(self.n_starts, len(positives)), replace=False)
        starts = np.vstack([positives[i] for i in chosen_bags])  # every instance of n_starts positive bags
        d = starts.shape[1]
        best, best_loss = None, np.inf
        for t0 in starts:
            theta = np.concatenate([t0, np.full(d, self.initial_scale / np.sqrt(d))])
            loss = np.inf
            for _ in range(self.max_iter):
                chosen = self._most_likely(bags, theta[:d], theta[d:])  # E-step
                found = minimize(negative_log_dd, theta, args=(chosen, y), jac=True, method="L-BFGS-B")  # M-step
                if found.fun >= loss - 1e-6:
                    break
                theta, loss = found.x, float(found.fun)
            # a start is judged by the diverse density of the training bags, each by its most likely instance
            loss = negative_log_dd(theta, self._most_likely(bags, theta[:d], theta[d:]), y)[0]
            if loss < best_loss:
                best, best_loss = theta, loss
        assert best is not None
        self.target_, self.scale_ = best[:d], best[d:]
        self.diverse_density_ = float(np.exp(-best_loss))

    @staticmethod
    def _most_likely(bags: Sequence[np.ndarray], t: np.ndarray, s: np.ndarray) -> np.ndarray:
        """Each bag's most likely instance (smallest scaled distance: no underflow of exp(-d))."""
        return np.stack([b[np.argmin(_distances(b, t, s))] for b in bags])

    def bag_scores(self, bags: Sequence[np.ndarray]) -> np.ndarray:
        # logit of exp(-d) for each bag's nearest instance: -d - log(1 - exp(-d)), stable for any d
        d = np.maximum(np.array([_distances(b, self.target_, self.scale_).min() for b in bags]), _EPS)
        return -d - np.log(-np.expm1(-d))


BASELINES.register("mil/EMDD")(Baseline(lambda seed, **kw: EMDD(random_state=seed, **kw), (IMGS, IMGS_ATTRS)))
