"""Linear heads on frozen backbone features: multinomial logistic regression on a subset of units.

The head sees only its kept units, standardised with the training rows' mean and standard
deviation, and minimises the mean cross-entropy plus ``||W||^2 / (2 C n)`` (n training rows; the
bias is not penalised). That is scikit-learn's ``LogisticRegression(C=C)`` objective divided by
``C n``, so ``C`` means what it means there. It is solved full-batch with L-BFGS in torch
(strong-Wolfe line search), optionally warm-started from another head.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from wmprobe.errors import MitigationError

#: The default regularisation (scikit-learn's C) of the paper protocol, and the default CV grid.
#: 0.3 is what 3-fold CV on the training split chose for efficientnet_lite0 on Caltech-101 (seed
#: 0); over the grid the CV accuracy moved by less than 0.6 percentage points.
DEFAULT_C = 0.3
DEFAULT_C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


@dataclass
class LinearHead:
    """A fitted head: logits = ((x[:, kept] - mean) / scale) @ weight.T + bias.

    Attributes:
        kept: the feature units the head reads, sorted, ``[k]``; every other unit is ignored.
        n_features: the number of backbone feature units.
        mean, scale: standardisation of the kept units, fitted on the training rows, ``[k]``.
        weight: ``[n_classes, k]``; bias: ``[n_classes]``.
        C: the regularisation it was fitted with; n_iter: L-BFGS iterations used.
    """

    kept: np.ndarray
    n_features: int
    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    C: float
    n_iter: int = 0

    @property
    def n_classes(self) -> int:
        return int(self.weight.shape[0])

    @property
    def mask(self) -> np.ndarray:
        """Boolean ``[n_features]``: True for the units the head reads."""
        m = np.zeros(self.n_features, dtype=bool)
        m[self.kept] = True
        return m

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Logits ``[n, n_classes]`` (float64) of backbone features ``[n, n_features]``."""
        x = np.asarray(features)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise MitigationError(
                f"Expected argument `features` to have shape [n, {self.n_features}] "
                f"but got {x.shape}"
            )
        z = (x[:, self.kept].astype(np.float64) - self.mean) / self.scale
        return z @ self.weight.T.astype(np.float64) + self.bias

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Predicted class of each row."""
        return self.logits(features).argmax(axis=1)


#: Below this many multiply-adds per pass (rows x units x classes), one thread is faster.
_SMALL = 4_000_000


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch threads (None: unchanged), restoring the count on exit."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def standardiser(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each column (a constant column gets scale 1)."""
    mean = x.mean(axis=0, dtype=np.float64)
    scale = x.std(axis=0, dtype=np.float64)
    scale[scale < 1e-12] = 1.0
    return mean, scale


def fit_head(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    n_classes: int,
    kept: np.ndarray | None = None,
    C: float = DEFAULT_C,
    init: LinearHead | None = None,
    max_iter: int = 1000,
    tol: float = 1e-5,
    dtype: torch.dtype = torch.float32,
) -> LinearHead:
    """Fit a multinomial logistic-regression head on the ``kept`` units of ``features``.

    Args:
        features: training features ``[n, n_features]``.
        labels: class indices ``[n]`` in ``range(n_classes)``.
        kept: units the head may read (default: all).
        C: inverse regularisation strength (scikit-learn's meaning).
        init: a head to start from (its weights on the units both heads keep; zero elsewhere).
        max_iter: L-BFGS iterations at most; tol: stop when every gradient entry is below it.
    """
    x_all = np.asarray(features)
    y = np.asarray(labels, dtype=np.int64)
    if x_all.ndim != 2 or len(y) != x_all.shape[0] or len(y) == 0:
        raise MitigationError(
            f"Expected `features` [n, units] and `labels` [n] with n > 0 but got "
            f"{x_all.shape} and {y.shape}"
        )
    if y.min() < 0 or y.max() >= n_classes:
        raise MitigationError(f"Expected labels in [0, {n_classes}) but got {y.min()}..{y.max()}")
    if C <= 0:
        raise MitigationError(f"Expected argument `C` to be > 0 but got {C}")
    n_features = x_all.shape[1]
    kept = np.arange(n_features) if kept is None else np.sort(np.asarray(kept, dtype=np.int64))
    x = x_all[:, kept]
    mean, scale = standardiser(x)
    xt = torch.from_numpy(((x - mean) / scale).astype(np.float32)).to(dtype)
    yt = torch.from_numpy(y)
    w0 = np.zeros((n_classes, len(kept)))
    b0 = np.zeros(n_classes)
    if init is not None:
        pos = {u: i for i, u in enumerate(init.kept.tolist())}
        for j, u in enumerate(kept.tolist()):
            if u in pos:
                w0[:, j] = init.weight[:, pos[u]]
        b0 = init.bias.copy()
    w = torch.tensor(w0, dtype=dtype, requires_grad=True)
    b = torch.tensor(b0, dtype=dtype, requires_grad=True)
    l2 = 1.0 / (C * len(y))
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=tol,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(xt @ w.T + b, yt) + 0.5 * l2 * (w * w).sum()
        loss.backward()
        return loss

    if len(kept):
        small = len(y) * len(kept) * n_classes < _SMALL
        with threads(1 if small else None):  # thread start-up dominates small problems
            opt.step(closure)
    else:  # no unit left: the head predicts the training class frequencies
        with torch.no_grad():
            freq = np.bincount(y, minlength=n_classes) + 1e-3
            b.copy_(torch.from_numpy(np.log(freq / freq.sum())))
    state = opt.state.get(opt.param_groups[0]["params"][0], {})
    return LinearHead(
        kept=kept,
        n_features=n_features,
        mean=mean,
        scale=scale,
        weight=w.detach().double().numpy(),
        bias=b.detach().double().numpy(),
        C=float(C),
        n_iter=int(state.get("n_iter", 0)),
    )


def stratified_folds(labels: np.ndarray, n_folds: int, *, seed: int) -> np.ndarray:
    """Fold index of every row: each class's rows dealt round-robin in a seeded random order."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([int(seed), 0xF01D])
    folds = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        folds[idx[rng.permutation(len(idx))]] = np.arange(len(idx)) % n_folds
    return folds


def choose_C(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    n_classes: int,
    kept: np.ndarray | None = None,
    grid: Sequence[float] = DEFAULT_C_GRID,
    n_folds: int = 3,
    seed: int = 0,
    max_iter: int = 1000,
    tol: float = 1e-5,
) -> tuple[float, list[dict]]:
    """The C of ``grid`` with the best mean accuracy over stratified folds of the training rows.

    Only the rows given (the training split) are used. Ties go to the smaller C (more
    regularisation). Returns the chosen C and one row per (C, fold) with its accuracy.
    """
    if n_folds < 2:
        raise MitigationError(f"Expected argument `n_folds` to be >= 2 but got {n_folds}")
    grid = sorted(float(c) for c in grid)
    folds = stratified_folds(labels, n_folds, seed=seed)
    rows = []
    for fold in range(n_folds):
        train, valid = folds != fold, folds == fold
        previous = None
        for c in grid:  # most regularised first, each warm-started from the previous
            head = fit_head(
                features[train],
                labels[train],
                n_classes=n_classes,
                kept=kept,
                C=c,
                init=previous,
                max_iter=max_iter,
                tol=tol,
            )
            previous = head
            acc = float((head.predict(features[valid]) == labels[valid]).mean())
            rows.append({"C": c, "fold": fold, "accuracy": acc, "n_iter": head.n_iter})
    means = {c: np.mean([r["accuracy"] for r in rows if r["C"] == c]) for c in grid}
    best = max(grid, key=lambda c: (round(means[c], 12), -c))
    return best, rows
