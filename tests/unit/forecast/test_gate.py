"""The release gate's statistics: a planted difference is significant, identical models are
not, a small improvement misses the margin, and both tests are deterministic for a seed."""

from __future__ import annotations

import numpy as np
import pytest

from zhuge.ml import gate


def losses(n: int = 60, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).gamma(4.0, 0.25, n)  # MASE-like, around 1


@pytest.mark.parametrize("test", ["dm", "bootstrap"])
def test_a_planted_difference_is_promoted(test):
    champion = losses()
    noise = np.random.default_rng(7).normal(0, 0.05, champion.size)
    challenger = champion * 0.8 + noise  # 20 % better, with noise
    decision = gate.decide(champion, challenger, test=test, seed=3)
    assert decision.promote and decision.decision == "promoted"
    assert decision.p_value < 0.001 and decision.improvement == pytest.approx(0.2, abs=0.03)
    assert decision.n_series == champion.size


@pytest.mark.parametrize("test", ["dm", "bootstrap"])
def test_identical_models_are_not(test):
    champion = losses()
    decision = gate.decide(champion, champion.copy(), test=test, seed=3)
    assert not decision.promote and decision.p_value == 1.0
    assert "margin" in decision.reason


def test_a_noisy_difference_is_not_significant():
    champion = losses(30)
    rng = np.random.default_rng(5)
    noise = rng.normal(0, 0.6, champion.size)
    challenger = champion - 0.05 * champion.mean() + noise - noise.mean()  # 5 %, noisy
    decision = gate.decide(champion, challenger, margin=0.0)
    assert not decision.promote and decision.p_value >= 0.05, decision


def test_deterministic_for_a_seed():
    champion, challenger = losses(), losses(seed=2)
    runs = [gate.paired_bootstrap(champion, challenger, seed=11) for _ in range(2)]
    assert runs[0] == runs[1]
    assert gate.paired_bootstrap(champion, challenger, seed=12) != runs[0]
    assert gate.decide(champion, challenger) == gate.decide(champion, challenger)


def test_margin_min_series_and_manual_hold_back_a_better_model():
    champion = losses()
    better = champion * 0.99  # significant (no noise) but under the 2 % margin
    assert "margin" in gate.decide(champion, better).reason
    much_better = champion * 0.5
    assert "min_series" in gate.decide(champion[:5], much_better[:5]).reason
    assert "manual" in gate.decide(champion, much_better, manual=True).reason
    assert gate.decide(champion, much_better).promote


def test_metrics_are_pluggable(monkeypatch):
    monkeypatch.setattr(gate, "_METRICS", dict(gate._METRICS))  # registered for this test only
    actual = np.array([[1.0, 2.0], [3.0, 4.0]])
    history = np.tile(np.arange(10.0), (2, 1))
    gate.register_metric("worst_step", lambda a, f, h, s: np.abs(a - f).max(axis=1))
    loss = gate.metric("worst_step")(actual, actual + np.array([[0, 2], [1, 0]]), history, 2)
    assert loss.tolist() == [2.0, 1.0]
    with pytest.raises(ValueError, match="unknown gate metric 'nope'"):
        gate.metric("nope")
