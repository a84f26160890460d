"""Adaptive thieves: KnockoffNets variants that know the defense (Kerckhoffs).

keras-dcp is public and its defaults are in the README, so the honest threat
model is a thief who knows DCP and, unless told otherwise, its default
parameters. Each variant queries like :class:`~keras_dcp.attacks.KnockoffNets`
(random natural images, same budget) and changes what it learns from the
answers:

* :class:`KnockoffNetsAware` (``knockoff-aware``): the clone's softmax goes
  through the thief's copy of the defense before the loss,
  ``CE(y', D(g(x)))``, so the clone learns a posterior whose defended image
  matches the answers; warm-started on labels, with the detector annealed, the
  aware loss only on answers that look perturbed;
* :class:`KnockoffNetsInvert` (``knockoff-invert``): per answer, the posterior
  closest to a prior among those the defense maps onto it
  (:func:`keras_dcp.attacks.inversion.invert_deception`), the prior being a
  label-only clone's prediction, refined in rounds; trains on the recovered
  posteriors;
* :class:`KnockoffNetsSelective` (``knockoff-selective``): spends half the
  budget at random, then the rest on the images its first clone is most sure
  of (those the detector tends to leave alone); trains on the untouched
  answers as they are and on the perturbed ones with smoothed labels.

With ``defense="estimate"`` the parameters are estimated from the answers
(:func:`estimate_deception_params`) instead of assumed.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_dcp.attacks.inversion import invert_deception
from keras_dcp.attacks.knockoff import KnockoffNets, hard_targets, soft_targets
from keras_dcp.attacks.registry import register_attack
from keras_dcp.defenses.deception import DEFAULT_BETA, DEFAULT_GAMMA
from keras_dcp.validation import check_int, check_number, check_positive

#: The defaults a thief who read the README assumes.
README_DEFAULTS = {"beta": DEFAULT_BETA, "gamma": DEFAULT_GAMMA, "tau": DEFAULT_BETA}


def flagged_rows(answers: np.ndarray, tau: float) -> np.ndarray:
    """Answers the detector moved: the defense only removes mass from the top, so ``max y' < tau``. ``(n,)`` bool."""
    return np.asarray(answers).max(axis=1) < tau


def estimate_deception_params(
    answers: np.ndarray,
    prior: np.ndarray | None = None,
    betas=(0.3, 0.5, 0.7, 0.9, 1.1, 1.3),
    gammas=(0.1, 0.2, 0.3, 0.5),
) -> dict[str, float]:
    """DCP's ``beta, gamma, tau`` as a thief can estimate them from its answers (and a clone).

    ``tau`` is where untouched answers start: the smallest ``max y'`` among
    answers that keep a probability below 1e-3 (an entry of a perturbed answer
    is at least ``g(y*) / S`` of its row, far above that; a confident softmax
    row has such entries). ``beta, gamma``: the thief knows the algorithm, so
    it simulates it. With ``prior`` its own clone's posteriors on the same
    queries, it applies DCP with each candidate ``(beta, gamma)`` to the prior
    rows below ``tau`` and compares the *profile* of the result with the
    profile of the flagged answers (the 10/25/50/75/90% quantiles of each sorted entry, ``5 K``
    numbers); the candidate with the smallest l1 distance wins. (The defense
    lifts the small entries to about ``g(0) / S`` and cuts the top; the
    profile shows how much, which is what ``beta`` and ``gamma`` set.)

    Args:
        answers: ``(n, K)`` the victim's answers.
        prior: ``(n, K)`` the thief's posteriors on the same queries (a
            label-only clone); None: a flat Dirichlet sample stands in (cruder).
        betas, gammas: the candidate grid.

    Returns:
        ``{"beta", "gamma", "tau", "distance"}``.
    """
    from keras_dcp.ops.deception import deception

    answers = np.asarray(answers, "float64")
    num_classes = answers.shape[1]
    untouched = answers.min(axis=1) < 1e-3
    tau = float(answers[untouched].max(axis=1).min()) if untouched.any() else 1.0
    flagged = answers.max(axis=1) < tau
    if not flagged.any():
        return {"beta": float("nan"), "gamma": float("nan"), "tau": tau, "distance": float("nan")}
    if prior is None:
        prior = np.random.default_rng(0).dirichlet(np.full(num_classes, 0.5), size=len(answers))
    prior = np.asarray(prior, "float32")
    candidates = prior[prior.max(axis=1) < tau]
    if not len(candidates):
        candidates = prior
    quantiles = (0.1, 0.25, 0.5, 0.75, 0.9)

    def profile(rows):
        return np.quantile(np.sort(rows, axis=1), quantiles, axis=0)

    target = profile(answers[flagged])
    best = None
    for beta in betas:
        for gamma in gammas:
            simulated = np.asarray(deception(candidates, beta=beta, gamma=gamma, tau=min(tau, 1.0), nu=None))
            distance = float(np.abs(profile(simulated) - target).sum())
            if best is None or distance < best["distance"]:
                best = {"beta": float(beta), "gamma": float(gamma), "tau": tau, "distance": distance}
    return best


class _DefenseKnowledge:
    """The thief's belief about the defense: README defaults, given values, or ``"estimate"``."""

    def __init__(self, defense: Any):
        if isinstance(defense, str) and defense == "estimate":
            self.estimate, self.params = True, None
        else:
            params = dict(README_DEFAULTS, **(defense or {}))
            self.estimate = False
            self.params = {
                "beta": check_positive("beta", params["beta"]),
                "gamma": check_positive("gamma", params["gamma"]),
                "tau": check_positive("tau", params["tau"] if params["tau"] is not None else params["beta"],
                                      maximum=1.0),
            }

    def resolve(self, answers, prior=None):
        if self.estimate:
            estimated = estimate_deception_params(answers, prior)
            self.params = {k: estimated[k] for k in ("beta", "gamma", "tau")}
        return self.params


class _AdaptiveKnockoff(KnockoffNets):
    needs_query_images = True
    knows_defense = True

    @property
    def trains_in_parallel(self) -> bool:
        """Never: these thieves learn from their answers in their own way (:meth:`_learn`), not the plain step."""
        return False

    def __init__(self, make_clone, defense: Any = None, **kwargs):
        if "labels" in kwargs:
            raise ValueError(f"{type(self).__name__} chooses its own targets; drop `labels`.")
        super().__init__(make_clone, **kwargs)
        if defense is not None and defense != "estimate" and not isinstance(defense, dict):
            raise ValueError(
                "`defense` must be None (the README defaults), a dict of beta/gamma/tau, or 'estimate'; "
                f"got {defense!r}."
            )
        self.knowledge = _DefenseKnowledge(defense)
        self.defense_params = None

    def _fresh_clone(self, x):
        """A new clone with the initial weights ``extract`` started from (same seed)."""
        keras.utils.set_random_seed(self.seed)
        return self._new_clone(x[:1])

    def _reset(self, clone, x):
        """Put ``clone`` back to its initial weights, to train it again from scratch."""
        clone.set_weights(self._fresh_clone(x).get_weights())

    @staticmethod
    def _predict(clone, x):
        return np.asarray(clone.predict(x, batch_size=512, verbose=0), "float64")


def _cross_entropy(target, probabilities):
    return -keras.ops.sum(target * keras.ops.log(keras.ops.clip(probabilities, 1e-7, 1.0)), axis=-1)


@register_attack("knockoff-aware")
class KnockoffNetsAware(_AdaptiveKnockoff):
    """Defense-aware training: the clone's softmax goes through the thief's copy of DCP before the loss.

    With ``y'`` an answer, ``g`` the clone's softmax, ``t`` the one-hot of
    ``argmax y'`` and ``f = [max y' < tau]`` (the answer looks perturbed):

    .. math::

        \\mathcal L = (1 - w)\\, CE(t, g) + w \\left[(1 - f)\\, CE(y', g)
            + f \\left(CE(y', D_\\nu(g)) + \\lambda\\, CE(t, g)\\right)\\right]

    where ``D_nu`` is DCP with the thief's ``beta, gamma, tau`` and a detector
    slope ``nu`` annealed from ``nu_start`` to ``nu_end`` (a soft detector
    gives useful gradients early), and ``w`` ramps from 0 to 1 over the first
    ``warm_fraction`` of the epochs (a label-only warm start: training through
    ``D`` from scratch fails, ``D`` folds small and medium probabilities onto
    the same values). ``lambda`` keeps the top-1 label anchored.

    Args:
        make_clone: ``() -> keras.Model`` (softmax out).
        defense: None (README defaults), ``{"beta", "gamma", "tau"}``, or
            ``"estimate"`` (:func:`estimate_deception_params` on the answers).
        warm_fraction: share of the epochs before the aware loss is fully on.
        label_weight: ``lambda``.
        nu_start, nu_end: detector slope schedule.
        **kwargs: :class:`~keras_dcp.attacks.KnockoffNets` arguments (not ``labels``).
    """

    def __init__(self, make_clone, defense: Any = None, warm_fraction: float = 0.5, label_weight: float = 0.5,
                 nu_start: float = 20.0, nu_end: float = 1000.0, **kwargs):
        super().__init__(make_clone, defense=defense, **kwargs)
        self.warm_fraction = check_number("warm_fraction", warm_fraction, minimum=0.0, maximum=1.0)
        self.label_weight = check_number("label_weight", label_weight, minimum=0.0)
        self.nu_start = check_positive("nu_start", nu_start)
        self.nu_end = check_positive("nu_end", nu_end)

    def _learn(self, clone, x, answers, validation_data, callbacks, store):
        from keras_dcp.ops.deception import deception

        prior = None
        if self.knowledge.estimate:  # a label-only probe gives the simulation its posteriors
            probe = self._fresh_clone(x)
            self._train(probe, x, hard_targets(answers), None, None, None)
            prior = self._predict(probe, x)
        params = self.defense_params = self.knowledge.resolve(answers, prior)
        num_classes = answers.shape[1]
        flagged = flagged_rows(answers, params["tau"]).astype("float32")
        packed = np.concatenate([soft_targets(answers), flagged[:, None]], axis=1)
        weight = keras.Variable(0.0, trainable=False, name="aware_weight")
        nu = keras.Variable(self.nu_start, trainable=False, name="aware_nu")
        label_weight = self.label_weight

        def loss(y_true, y_pred):
            answer, flag = y_true[:, :num_classes], y_true[:, num_classes]
            hard = keras.ops.one_hot(keras.ops.argmax(answer, axis=-1), num_classes)
            defended = deception(y_pred, beta=params["beta"], gamma=params["gamma"], tau=params["tau"], nu=nu)
            aware = (1.0 - flag) * _cross_entropy(answer, y_pred) + flag * (
                _cross_entropy(answer, defended) + label_weight * _cross_entropy(hard, y_pred)
            )
            return (1.0 - weight) * _cross_entropy(hard, y_pred) + weight * aware

        epochs, warm = self.epochs, max(1.0, self.warm_fraction * self.epochs)
        nu_start, nu_end = self.nu_start, self.nu_end

        class Schedule(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                weight.assign(min(1.0, epoch / warm))
                progress = epoch / max(1, epochs - 1)
                nu.assign(float(nu_start * (nu_end / nu_start) ** progress))

        self._train(clone, x, packed, None, [Schedule(), *(callbacks or [])], store, loss=loss, metrics=[])


@register_attack("knockoff-invert")
class KnockoffNetsInvert(_AdaptiveKnockoff):
    """Inversion with a prior: train on the posteriors the defense most plausibly came from.

    Round 0 trains a label-only clone (``t = onehot(argmax y')``); its
    prediction is the prior. Each round then recovers, per answer, the
    posterior closest to the prior (``KL(prior || y)``) among those DCP maps to
    ``y'`` (:func:`~keras_dcp.attacks.inversion.invert_deception`), trains a
    fresh clone on them (soft cross-entropy), and takes its prediction as the
    next prior. Answers the detector left alone are used as they are.

    After :meth:`extract`: ``recovered`` ``(B, K)`` (the last round's
    posteriors), ``resolved`` ``(B,)`` (an exact preimage was found).

    Args:
        make_clone: ``() -> keras.Model`` (softmax out).
        defense: None (README defaults), ``{"beta", "gamma", "tau"}`` or ``"estimate"``.
        rounds: inversion rounds after the label-only one (each trains a clone).
        **kwargs: :class:`~keras_dcp.attacks.KnockoffNets` arguments (not ``labels``).
    """

    def __init__(self, make_clone, defense: Any = None, rounds: int = 1, **kwargs):
        super().__init__(make_clone, defense=defense, **kwargs)
        self.rounds = check_int("rounds", rounds, minimum=1)
        self.recovered = None
        self.resolved = None

    def _learn(self, clone, x, answers, validation_data, callbacks, store):
        self._train(clone, x, hard_targets(answers), None, callbacks, None)
        prior = self._predict(clone, x)
        params = self.defense_params = self.knowledge.resolve(answers, prior)
        for _ in range(self.rounds):
            recovered, resolved = invert_deception(answers, params["beta"], params["gamma"], params["tau"], prior)
            self.recovered, self.resolved = recovered.astype("float32"), resolved
            self._reset(clone, x)
            self._train(clone, x, soft_targets(recovered), None, callbacks, None)
            prior = self._predict(clone, x)


@register_attack("knockoff-selective")
class KnockoffNetsSelective(_AdaptiveKnockoff):
    """Spend the budget where the detector looks away, and trust perturbed answers less.

    Sampling: half the budget at random; a first clone (``probe_epochs``)
    trained on those answers scores the unused images by its top probability,
    and the other half goes to the most confident ones (images like those the
    victim answers untouched). The sampling does not resume from a checkpoint. Training: untouched-looking answers
    (``max y' >= tau``) as soft targets; perturbed-looking ones as labels
    smoothed by ``smoothing``: ``t = (1 - e) onehot(argmax y') + e / K``
    (noise-tolerant: their top-1 is right, their shape is the defense's).

    Args:
        make_clone: ``() -> keras.Model`` (softmax out).
        defense: None (README defaults), ``{"beta", "gamma", "tau"}`` or ``"estimate"``.
        smoothing: ``e``, in [0, 1).
        probe_epochs: epochs of the first clone.
        **kwargs: :class:`~keras_dcp.attacks.KnockoffNets` arguments (not ``labels``).
    """

    def __init__(self, make_clone, defense: Any = None, smoothing: float = 0.2, probe_epochs: int = 3, **kwargs):
        super().__init__(make_clone, defense=defense, **kwargs)
        self.smoothing = check_number("smoothing", smoothing, minimum=0.0, maximum=0.99)
        self.probe_epochs = check_int("probe_epochs", probe_epochs, minimum=1)

    def _sample_random(self, victim, query_images, budget, store):
        first = budget // 2
        order = np.random.default_rng(self.seed).permutation(len(query_images))
        indices = order[:first]
        answers = victim.query(query_images[indices], tag="selective-random") if first else np.zeros((0, 1))
        probe = self._fresh_clone(query_images)
        epochs, self.epochs = self.epochs, self.probe_epochs
        try:
            self._train(probe, query_images[indices], soft_targets(answers), None, None, None)
        finally:
            self.epochs = epochs
        pool = order[first:]
        confidence = self._predict(probe, query_images[pool]).max(axis=1)
        chosen = pool[np.argsort(-confidence, kind="stable")[: budget - first]]
        more = victim.query(query_images[chosen], tag="selective-confident")
        return np.concatenate([indices, chosen]).astype("int64"), np.concatenate([answers, more]).astype("float32")

    def _learn(self, clone, x, answers, validation_data, callbacks, store):
        params = self.defense_params = self.knowledge.resolve(answers)
        flagged = flagged_rows(answers, params["tau"])
        smoothed = (1.0 - self.smoothing) * hard_targets(answers) + self.smoothing / answers.shape[1]
        targets = np.where(flagged[:, None], smoothed, soft_targets(answers)).astype("float32")
        self._train(clone, x, targets, None, callbacks, store)


__all__ = [
    "KnockoffNetsAware",
    "KnockoffNetsInvert",
    "KnockoffNetsSelective",
    "README_DEFAULTS",
    "estimate_deception_params",
    "flagged_rows",
]
