"""A labelled battery of clustering problems, generated from fixed seeds (no downloads).

Eight shape families, six sets each (48 sets, 300-1,000 rows, 2-10 dimensions). Ground-truth
noise points carry the label ``-1``; scoring (:func:`score_ari`) leaves them out and counts a
predicted ``-1`` as one more label, as the clustering literature's batteries do.

Which families were looked at while ``auto``'s choice rule was tuned, and which were only
reported on, is data (:data:`TUNE_FAMILIES`, :data:`REPORT_FAMILIES`): the benchmark and the
docs state the split from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.datasets import make_blobs, make_circles, make_moons
from sklearn.metrics import adjusted_rand_score

__all__ = [
    "REPORT_FAMILIES",
    "TUNE_FAMILIES",
    "LabelledSet",
    "battery",
    "score_ari",
]

TUNE_FAMILIES = ("blobs", "rings", "density")
REPORT_FAMILIES = ("chains", "unbalanced", "noise", "elongated", "mixed")


@dataclass(frozen=True)
class LabelledSet:
    name: str
    family: str
    X: np.ndarray
    y: np.ndarray  # -1: background noise (left out of the score)

    @property
    def k(self) -> int:
        return len(np.unique(self.y[self.y >= 0]))


def score_ari(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """ARI on the rows whose true label is not noise; a predicted -1 is one more label."""
    keep = np.asarray(y_true) >= 0
    return float(adjusted_rand_score(np.asarray(y_true)[keep], np.asarray(y_pred)[keep]))


def _noise(rng: np.random.Generator, X: np.ndarray, y: np.ndarray, share: float):
    """Add uniform background points over the data's box (widened 10 %), labelled -1."""
    if share <= 0:
        return X, y
    m = round(share * len(X) / (1 - share))
    lo, hi = X.min(axis=0), X.max(axis=0)
    pad = 0.1 * (hi - lo)
    extra = rng.uniform(lo - pad, hi + pad, size=(m, X.shape[1]))
    return np.vstack([X, extra]), np.concatenate([y, np.full(m, -1)])


def _blobs(n: int, k: int, d: int, seed: int, std: float = 1.0, box: float = 10.0):
    X, y = make_blobs(
        n_samples=n,
        n_features=d,
        centers=k,
        cluster_std=std,
        center_box=(-box, box),
        random_state=seed,
    )
    return X, y


def _separated_blobs(n: int, k: int, d: int, seed: int, sep: float = 6.0, sizes=None):
    """k Gaussian blobs of unit sd whose centres are at least ``sep`` apart."""
    rng = np.random.default_rng(seed)
    side = sep * max(2.0, k ** (1.0 / d)) * 1.6
    centres: list[np.ndarray] = []
    while len(centres) < k:
        c = rng.uniform(-side, side, d)
        if all(np.linalg.norm(c - o) >= sep for o in centres):
            centres.append(c)
    sizes = sizes if sizes is not None else [n // k] * k
    X = np.vstack([rng.normal(c, 1.0, (s, d)) for c, s in zip(centres, sizes, strict=True)])
    y = np.repeat(np.arange(k), sizes)
    return X, y


def _rings(n: int, radii: list[float], seed: int, width: float = 0.08, centre=(0.0, 0.0)):
    rng = np.random.default_rng(seed)
    per = n // len(radii)
    parts, labels = [], []
    for i, r in enumerate(radii):
        t = rng.uniform(0, 2 * np.pi, per)
        rr = r + rng.normal(0, width, per)
        parts.append(np.c_[rr * np.cos(t), rr * np.sin(t)] + np.asarray(centre))
        labels.append(np.full(per, i))
    return np.vstack(parts), np.concatenate(labels)


def _spirals(n: int, arms: int, seed: int, noise: float = 0.15, turns: float = 1.5):
    rng = np.random.default_rng(seed)
    per = n // arms
    parts, labels = [], []
    for a in range(arms):
        t = np.sqrt(rng.uniform(0.05, 1, per)) * turns * 2 * np.pi
        phase = 2 * np.pi * a / arms
        r = t
        pts = np.c_[r * np.cos(t + phase), r * np.sin(t + phase)]
        parts.append(pts + rng.normal(0, noise, pts.shape))
        labels.append(np.full(per, a))
    return np.vstack(parts), np.concatenate(labels)


def _chain(n: int, links: int, seed: int):
    """Interlocking 2-D 'moons' laid end to end: a chain of arcs."""
    rng = np.random.default_rng(seed)
    per = n // links
    parts, labels = [], []
    for i in range(links):
        t = rng.uniform(0, np.pi, per)
        flip = -1 if i % 2 else 1
        pts = np.c_[np.cos(t) + 1.0 * i, flip * (np.sin(t) - 0.25 * (i % 2))]
        parts.append(pts + rng.normal(0, 0.06, pts.shape))
        labels.append(np.full(per, i))
    return np.vstack(parts), np.concatenate(labels)


def _density(n: int, stds: list[float], seed: int, d: int = 2, sep: float = 8.0):
    rng = np.random.default_rng(seed)
    k = len(stds)
    X, y = _separated_blobs(n, k, d, seed, sep=sep)
    scale = np.asarray(stds)[y][:, None]
    centres = np.vstack([X[y == i].mean(axis=0) for i in range(k)])
    X = centres[y] + (X - centres[y]) * scale
    del rng
    return X, y


def _unbalanced(sizes: list[int], d: int, seed: int, sep: float = 7.0):
    return _separated_blobs(sum(sizes), len(sizes), d, seed, sep=sep, sizes=sizes)


def _elongated(n: int, k: int, d: int, seed: int, stretch: float = 6.0):
    rng = np.random.default_rng(seed)
    X, y = _separated_blobs(n, k, d, seed, sep=10.0)
    out = np.empty_like(X)
    for i in range(k):
        part = X[y == i]
        c = part.mean(axis=0)
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        scale = np.ones(d)
        scale[0] = stretch
        out[y == i] = c + ((part - c) * scale) @ q.T
    return out, y


def _embed(X: np.ndarray, d: int, seed: int, noise: float = 0.1) -> np.ndarray:
    """Put 2-D shapes into d dimensions: the extra axes are small Gaussian noise."""
    if d <= X.shape[1]:
        return X
    rng = np.random.default_rng(seed)
    return np.c_[X, rng.normal(0, noise, (len(X), d - X.shape[1]))]


def _family_sets() -> list[tuple[str, str, Callable[[], tuple[np.ndarray, np.ndarray]]]]:
    s: list[tuple[str, str, Callable[[], tuple[np.ndarray, np.ndarray]]]] = []
    # blobs: 2-40 well-separated clusters, 2-10 dimensions
    for k, d, n, seed in (
        (2, 2, 400, 1),
        (5, 3, 600, 2),
        (10, 2, 800, 3),
        (15, 5, 900, 4),
        (20, 2, 1000, 5),
        (40, 10, 1000, 6),
    ):
        s.append(
            (
                f"blobs_k{k}_d{d}",
                "blobs",
                lambda k=k, d=d, n=n, seed=seed: _separated_blobs(n, k, d, seed, sep=7.0),
            )
        )
    # rings and nested shapes
    s += [
        ("rings_2", "rings", lambda: _rings(600, [1.0, 2.5], 11)),
        ("rings_3", "rings", lambda: _rings(900, [1.0, 2.2, 3.4], 12)),
        (
            "circles_sklearn",
            "rings",
            lambda: make_circles(800, factor=0.4, noise=0.05, random_state=13),
        ),
        ("ring_with_core", "rings", lambda: _ring_with_core(700, 14)),
        ("two_ring_pairs", "rings", lambda: _two_ring_pairs(800, 15)),
        ("rings_2_in_4d", "rings", lambda: _with_y(_rings(600, [1.0, 2.5], 16), 4, 16)),
    ]
    # different densities
    s += [
        ("density_3", "density", lambda: _density(600, [0.3, 1.0, 2.0], 21)),
        ("density_4", "density", lambda: _density(800, [0.2, 0.5, 1.0, 2.0], 22, sep=9.0)),
        ("density_5_d3", "density", lambda: _density(800, [0.3, 0.6, 1.0, 1.5, 2.0], 23, d=3)),
        ("density_2_close", "density", lambda: _density(500, [0.3, 1.6], 24, sep=6.0)),
        (
            "density_6_d5",
            "density",
            lambda: _density(900, [0.3, 0.5, 0.8, 1.2, 1.6, 2.0], 25, d=5, sep=9.0),
        ),
        (
            "density_8",
            "density",
            lambda: _density(960, [0.3, 0.5, 0.7, 1.0, 0.4, 0.9, 1.3, 0.6], 26, sep=8.0),
        ),
    ]
    # chains and spirals
    s += [
        ("moons", "chains", lambda: make_moons(600, noise=0.06, random_state=31)),
        ("spirals_2", "chains", lambda: _spirals(800, 2, 32)),
        ("spirals_3", "chains", lambda: _spirals(900, 3, 33, noise=0.1)),
        ("chain_4", "chains", lambda: _chain(800, 4, 34)),
        ("chain_6", "chains", lambda: _chain(960, 6, 35)),
        (
            "moons_in_5d",
            "chains",
            lambda: _with_y(make_moons(700, noise=0.06, random_state=36), 5, 36),
        ),
    ]
    # unbalanced sizes
    s += [
        ("unbalanced_3", "unbalanced", lambda: _unbalanced([500, 100, 20], 2, 41)),
        ("unbalanced_4_d3", "unbalanced", lambda: _unbalanced([600, 200, 60, 30], 3, 42)),
        ("unbalanced_5", "unbalanced", lambda: _unbalanced([400, 250, 120, 60, 30], 2, 43)),
        ("unbalanced_2_d6", "unbalanced", lambda: _unbalanced([700, 60], 6, 44)),
        (
            "unbalanced_8",
            "unbalanced",
            lambda: _unbalanced([300, 200, 120, 80, 60, 40, 30, 20], 2, 45),
        ),
        (
            "unbalanced_12_d4",
            "unbalanced",
            lambda: _unbalanced([200, 150, 120, 100, 80, 60, 50, 40, 30, 30, 25, 20], 4, 46),
        ),
    ]
    # background noise, 0-30 %
    s += [
        ("noise_0_blobs_6", "noise", lambda: _separated_blobs(600, 6, 2, 51, sep=7.0)),
        (
            "noise_10_blobs_4",
            "noise",
            lambda: _noisy(_separated_blobs(540, 4, 2, 52, sep=8.0), 0.10, 52),
        ),
        (
            "noise_20_blobs_5",
            "noise",
            lambda: _noisy(_separated_blobs(600, 5, 2, 53, sep=8.0), 0.20, 53),
        ),
        (
            "noise_30_blobs_3",
            "noise",
            lambda: _noisy(_separated_blobs(560, 3, 2, 54, sep=8.0), 0.30, 54),
        ),
        (
            "noise_20_moons",
            "noise",
            lambda: _noisy(make_moons(600, noise=0.05, random_state=55), 0.20, 55),
        ),
        (
            "noise_15_blobs_8_d3",
            "noise",
            lambda: _noisy(_separated_blobs(800, 8, 3, 56, sep=8.0), 0.15, 56),
        ),
    ]
    # elongated (anisotropic) clusters
    s += [
        ("elongated_3", "elongated", lambda: _elongated(600, 3, 2, 61)),
        ("elongated_4_d3", "elongated", lambda: _elongated(800, 4, 3, 62)),
        ("elongated_6", "elongated", lambda: _elongated(900, 6, 2, 63, stretch=4.0)),
        ("elongated_5_d6", "elongated", lambda: _elongated(800, 5, 6, 64)),
        ("aniso_sklearn", "elongated", lambda: _sklearn_aniso(600, 65)),
        ("elongated_10_d8", "elongated", lambda: _elongated(1000, 10, 8, 66, stretch=4.0)),
    ]
    # mixed: shapes beside blobs, many clusters with noise, higher dimensions
    s += [
        ("ring_and_blobs", "mixed", lambda: _ring_and_blobs(800, 71)),
        ("moons_and_blobs", "mixed", lambda: _moons_and_blobs(800, 72)),
        (
            "blobs_25_noise_10",
            "mixed",
            lambda: _noisy(_separated_blobs(900, 25, 2, 73, sep=7.0), 0.10, 73),
        ),
        ("blobs_30_d10", "mixed", lambda: _separated_blobs(900, 30, 10, 74, sep=7.0)),
        ("spiral_and_blob_noise_5", "mixed", lambda: _noisy(_spiral_and_blob(700, 75), 0.05, 75)),
        ("blobs_16_d3_close", "mixed", lambda: _separated_blobs(960, 16, 3, 76, sep=6.0)),
    ]
    return s


def _with_y(Xy, d: int, seed: int):
    X, y = Xy
    return _embed(X, d, seed), y


def _noisy(Xy, share: float, seed: int):
    X, y = Xy
    return _noise(np.random.default_rng(seed + 1000), X, y, share)


def _ring_with_core(n: int, seed: int):
    X, y = _rings(n // 2, [2.5], seed)
    rng = np.random.default_rng(seed)
    core = rng.normal(0, 0.4, (n - len(X), 2))
    return np.vstack([X, core]), np.concatenate([y, np.full(len(core), 1)])


def _two_ring_pairs(n: int, seed: int):
    a, ya = _rings(n // 2, [1.0, 2.2], seed, centre=(-4.0, 0.0))
    b, yb = _rings(n // 2, [1.0, 2.2], seed + 1, centre=(4.0, 0.0))
    return np.vstack([a, b]), np.concatenate([ya, yb + 2])


def _sklearn_aniso(n: int, seed: int):
    X, y = make_blobs(n_samples=n, centers=3, random_state=seed)
    return X @ np.array([[0.6, -0.6], [-0.4, 0.8]]), y


def _ring_and_blobs(n: int, seed: int):
    R, yr = _rings(n // 2, [3.0], seed, width=0.12)
    rng = np.random.default_rng(seed)
    m = (n - len(R)) // 3
    blobs = [rng.normal(c, 0.35, (m, 2)) for c in ((0, 0), (7, 0), (7, 3))]
    X = np.vstack([R, *blobs])
    y = np.concatenate([yr, *(np.full(m, i + 1) for i in range(3))])
    return X, y


def _moons_and_blobs(n: int, seed: int):
    M, ym = make_moons(n // 2, noise=0.06, random_state=seed)
    rng = np.random.default_rng(seed)
    m = (n - len(M)) // 2
    b1, b2 = rng.normal((4.0, 0.5), 0.3, (m, 2)), rng.normal((-3.0, 0.5), 0.3, (m, 2))
    return np.vstack([M, b1, b2]), np.concatenate([ym, np.full(m, 2), np.full(m, 3)])


def _spiral_and_blob(n: int, seed: int):
    S, ys = _spirals(2 * n // 3, 2, seed, noise=0.12)
    rng = np.random.default_rng(seed)
    B = rng.normal((16.0, 0.0), 0.8, (n - len(S), 2))
    return np.vstack([S, B]), np.concatenate([ys, np.full(len(B), 2)])


def battery(families: tuple[str, ...] | None = None) -> list[LabelledSet]:
    """The labelled sets (optionally only some families), in a fixed order, same every call."""
    out = []
    for name, family, make in _family_sets():
        if families is not None and family not in families:
            continue
        X, y = make()
        out.append(LabelledSet(name, family, np.asarray(X, dtype=float), np.asarray(y, int)))
    return out
