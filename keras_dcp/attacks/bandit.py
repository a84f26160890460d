"""KnockoffNets' adaptive strategy: the rewards, the arms and the gradient bandit.

The thief treats coarse groups of its query set (*arms*: the query set's own
labels, or k-means clusters) as the actions of a bandit, and learns which to
query from a reward per answer (Orekondy, Schiele and Fritz, CVPR 2019, Sec. 4.2).
:class:`GradientBandit` holds the policy; :mod:`keras_dcp.attacks.knockoff`
runs it.

>>> bandit = GradientBandit(3, step="inverse_count")
>>> bandit.update(0, 1.0); bandit.update(0, 1.0); bandit.update(2, -1.0)
>>> bandit.policy().round(3).tolist(), bandit.counts.tolist()
([0.442, 0.442, 0.116], [2, 0, 1])
"""

from __future__ import annotations

import math

import numpy as np

from keras_dcp.validation import check_choice, check_int, check_positive

#: Bandit step rules: a constant ``alpha``, or ART's ``1 / N(a)``.
BANDIT_STEPS = ("constant", "inverse_count")


def certainty_reward(answers):
    """``r_cert = y_(1) - y_(2)``: the margin between the top two probabilities. ``(n, K) -> (n,)``."""
    top2 = -np.sort(-answers, axis=1)[:, :2]
    return top2[:, 0] - top2[:, 1]


def diversity_reward(answer, recent):
    """``r_div = sum_k max(0, y_k - mean(recent)_k)``: mass on classes seen less of late.

    ``answer`` ``(K,)``, ``recent`` ``(m, K)`` the last answers (0 if ``m = 0``).
    """
    if len(recent) == 0:
        return 0.0
    return float(np.maximum(answer - recent.mean(axis=0), 0.0).sum())


def loss_reward(answers, clone_probabilities, floor=1e-7):
    """``r_loss = -sum_k y_k log q_k``: the clone's cross-entropy on the victim's answer. ``(n,)``."""
    q = np.clip(clone_probabilities, floor, 1.0)
    return -(answers * np.log(q)).sum(axis=1)


def cluster_query_set(images, num_arms, seed=0, pooled_size=4):
    """Arms for the adaptive strategy when the query set has no labels.

    k-means (scikit-learn ``MiniBatchKMeans``) on the images average-pooled to
    ``pooled_size x pooled_size x C`` (colour and layout, cheap).
    ``(n, H, W, C) -> (n,)`` int arm ids in ``[0, num_arms)``.
    """
    from sklearn.cluster import MiniBatchKMeans

    n, height, width, channels = images.shape
    ph, pw = max(1, height // pooled_size), max(1, width // pooled_size)
    cropped = images[:, : ph * pooled_size, : pw * pooled_size]
    pooled = cropped.reshape(n, pooled_size, ph, pooled_size, pw, channels).mean(axis=(2, 4)).reshape(n, -1)
    kmeans = MiniBatchKMeans(n_clusters=num_arms, random_state=seed, n_init=3, batch_size=1024)
    return kmeans.fit_predict(pooled).astype("int64")


class RunningStats:
    """Welford mean / variance of a stream of rewards (to standardise and to baseline)."""

    def __init__(self, count=0, mean=0.0, m2=0.0):
        self.count, self.mean, self.m2 = int(count), float(mean), float(m2)

    def update(self, value):
        self.count += 1
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)

    @property
    def std(self):
        return math.sqrt(self.m2 / self.count) if self.count > 1 else 1.0

    def standardize(self, value):
        return (value - self.mean) / (self.std + 1e-8) if self.count > 1 else 0.0

    def to_list(self):
        return [self.count, self.mean, self.m2]


def softmax_policy(preferences, alive=None):
    """``softmax(H)`` over the arms still ``alive`` (the others get 0). ``(A,) -> (A,)``."""
    preferences = np.asarray(preferences, dtype="float64")
    alive = np.ones(len(preferences), bool) if alive is None else np.asarray(alive, bool)
    logits = np.where(alive, preferences, -np.inf)
    logits = logits - logits[alive].max()
    weights = np.exp(logits)
    return weights / weights.sum()


class GradientBandit:
    """The gradient bandit over ``A`` arms (Sutton and Barto, Sec. 2.8), as KnockoffNets uses it.

    Policy ``pi = softmax(H)``. After pulling arm ``a`` and seeing reward
    ``r``, with ``rbar`` the mean of all rewards so far (this one included)
    and ``pi`` the policy the arm was drawn from,

    .. math::

        H(a) \\mathrel{+}= s (r - \\bar r)(1 - \\pi(a)), \\qquad
        H(a') \\mathrel{-}= s (r - \\bar r)\\,\\pi(a') \\quad (a' \\ne a)

    with the step ``s``:

    * ``step="constant"``: ``s = alpha`` (``learning_rate``), this package's
      original rule. With 200 arms and ``alpha = 0.05`` the policy barely
      moves in 1,000 queries and can lock onto one arm by 5,000.
    * ``step="inverse_count"``: ``s = 1 / N(a)``, ``N(a)`` the pulls of arm
      ``a`` so far (this one included): IBM ART's ``KnockoffNets``. Large
      steps for rarely pulled arms, shrinking as evidence accumulates.

    Args:
        num_arms: ``A >= 2``.
        step: ``"constant"`` or ``"inverse_count"``.
        learning_rate: ``alpha`` of the constant step.

    Attributes:
        preferences: ``H``, ``(A,)`` float64.
        counts: ``N``, pulls per arm, ``(A,)`` int64.
        baseline: :class:`RunningStats` of the rewards (``rbar`` = its mean).
    """

    def __init__(self, num_arms: int, step: str = "constant", learning_rate: float = 0.05):
        self.num_arms = check_int("num_arms", num_arms, minimum=2)
        self.step = check_choice("bandit_step", step, BANDIT_STEPS)
        self.learning_rate = check_positive("bandit_learning_rate", learning_rate)
        self.preferences = np.zeros(self.num_arms)
        self.counts = np.zeros(self.num_arms, dtype="int64")
        self.baseline = RunningStats()

    def policy(self, alive=None) -> np.ndarray:
        """``pi = softmax(H)`` over the ``alive`` arms (all by default)."""
        return softmax_policy(self.preferences, alive)

    def update(self, arm: int, reward: float, policy: np.ndarray | None = None) -> None:
        """One bandit step for a pull of ``arm`` that earned ``reward`` (``policy``: the one it was drawn from)."""
        policy = self.policy() if policy is None else policy
        self.baseline.update(float(reward))
        self.counts[arm] += 1
        rate = self.learning_rate if self.step == "constant" else 1.0 / self.counts[arm]
        step = rate * (float(reward) - self.baseline.mean)
        self.preferences -= step * policy
        self.preferences[arm] += step

    def state(self) -> dict:
        """A JSON-able snapshot (for checkpoints)."""
        return {"preferences": self.preferences.tolist(), "counts": self.counts.tolist(),
                "baseline": self.baseline.to_list()}

    def restore(self, state: dict) -> None:
        self.preferences = np.asarray(state["preferences"], dtype="float64")
        self.counts = np.asarray(state.get("counts", np.zeros(self.num_arms)), dtype="int64")
        self.baseline = RunningStats(*state["baseline"])


__all__ = [
    "BANDIT_STEPS",
    "GradientBandit",
    "RunningStats",
    "certainty_reward",
    "cluster_query_set",
    "diversity_reward",
    "loss_reward",
    "softmax_policy",
]
