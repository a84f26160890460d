"""Adaptive Misinformation (Kariyappa & Qureshi, CVPR 2020) as a Keras layer with its misinformation model inside."""

from __future__ import annotations

import warnings
from typing import Any

import keras

from keras_dcp import ops as defense_ops
from keras_dcp.defenses.deception import MAX_NU
from keras_dcp.defenses.registry import register_defense
from keras_dcp.defenses.second_model import SecondModelDefense, fresh_copy, load_second_model
from keras_dcp.validation import check_positive

#: Default detector threshold (the CLI example; the paper sweeps tau to trace its trade-off).
DEFAULT_TAU = 0.5


@register_defense("am")
@keras.saving.register_keras_serializable(package="keras_dcp")
class AdaptiveMisinformation(SecondModelDefense):
    """Adaptive Misinformation: where the victim is unsure, answer with a model trained to be wrong.

    .. math::

        \\tilde y = (1 - \\alpha)\\, f(x) + \\alpha\\, \\hat f(x), \\qquad
        \\alpha = \\sigma\\left(\\nu\\,(\\tau - \\max_k f(x)_k)\\right)

    ``f(x)`` is the protected model's answer, ``f^`` the *misinformation
    model* (same inputs, same classes), trained to put little mass on the
    true class with :func:`keras_dcp.training.train_misinformation`. Confident
    answers (``alpha == 0``) come back bit-identical. The math is
    :func:`keras_dcp.ops.adaptive_misinformation`; the layer is called on
    ``[probabilities, inputs]`` and :func:`keras_dcp.protect` wires it so.

    Without a misinformation model (``misinformation_model=None``, e.g. for
    a latency benchmark), :func:`keras_dcp.protect` puts in an *untrained*
    copy of the victim's architecture and warns: the answers are then mixed
    with noise, not misinformation, and the defense protects nothing.

    Example:

    >>> import numpy as np, keras, keras_dcp
    >>> victim = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> f_hat = keras.models.clone_model(victim)
    >>> protected = keras_dcp.protect(victim, keras_dcp.AdaptiveMisinformation(f_hat, tau=0.9))
    >>> x = np.zeros((1, 4), "float32")  # the victim answers uniform: max 1/3 < tau, alpha = 1
    >>> bool(np.allclose(protected.predict(x, verbose=0), f_hat.predict(x, verbose=0), atol=1e-6))
    True

    Args:
        misinformation_model: ``f^``, a Keras model on the protected model's
            inputs with ``K`` outputs (probabilities, or logits), or None.
        tau: detector threshold in ``(0, 1]``.
        nu: detector slope in ``(0, 1e9]`` (1000, the paper's), or None for
            the hard step ``[max f(x) < tau]``.

    Call arguments:
        inputs: ``[probabilities (batch, K), queries]``.
        training: when True the layer returns the probabilities unchanged.

    Returns:
        The defended probabilities, shape ``(batch, K)``, dtype of the input.
    """

    params = ("tau", "nu")
    model_argument = "misinformation_model"
    model_role = "misinformation model"

    def __init__(
        self,
        misinformation_model: keras.Model | None = None,
        tau: float = DEFAULT_TAU,
        nu: float | None = 1000.0,
        **kwargs,
    ):
        super().__init__(misinformation_model, **kwargs)
        self.tau = check_positive("tau", tau, maximum=1.0)
        self.nu = check_positive("nu", nu, maximum=MAX_NU, allow_none=True)

    @classmethod
    def from_params(cls, model: Any = None, **params: Any) -> "AdaptiveMisinformation":
        """From a spec: ``model`` may be a path to the misinformation model's ``.keras`` file."""
        return cls(misinformation_model=load_second_model(model, "misinformation model"), **params)

    def default_model(self, model: keras.Model) -> keras.Model:
        warnings.warn(
            "AdaptiveMisinformation got no misinformation model: an untrained copy of the victim's "
            "architecture stands in. It protects nothing (fit for timing only); train one with "
            "keras_dcp.training.train_misinformation and pass it (spec: am:tau=...,model=PATH).",
            UserWarning,
            stacklevel=4,
        )
        return fresh_copy(model, "misinformation model")

    def defend(self, y, x):
        y_hat = self.second_model_probabilities(x)
        return defense_ops.adaptive_misinformation(y, y_hat, tau=self.tau, nu=self.nu)
