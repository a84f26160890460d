"""MAD (Prediction Poisoning, Orekondy et al., ICLR 2020) as a Keras layer with its surrogate inside."""

from __future__ import annotations

from typing import Any

import keras

from keras_dcp import ops as defense_ops
from keras_dcp.defenses.registry import register_defense
from keras_dcp.defenses.second_model import SecondModelDefense, fresh_copy, load_second_model
from keras_dcp.validation import check_bool, check_choice, check_number

#: How the vertex is chosen: the closed form on the surrogate's probabilities, or autodiff per query.
OBJECTIVES = ("closed_form", "jacobian")
#: Default l1 budget (the CLI example; the paper sweeps eps in [0.01, 2]).
DEFAULT_EPS = 0.5


def last_layer_kernel(model: keras.Model):
    """The kernel of ``model``'s last layer with a 2D ``kernel`` (its classifier head), the reference's ``W``."""
    for layer in reversed(model.layers):
        kernel = getattr(layer, "kernel", None)
        if kernel is not None and len(kernel.shape) == 2:
            return kernel
        if isinstance(layer, keras.Model):
            try:
                return last_layer_kernel(layer)
            except ValueError:
                continue
    raise ValueError(f"Model {model.name!r} has no layer with a 2D kernel (a Dense head) to differentiate.")


def log_probabilities(model: keras.Model, x, logits_model: keras.Model | None = None):
    """``log p(x)``: from the logits when ``logits_model`` is given, else ``log(clip(p, 1e-30))``."""
    if logits_model is not None:
        return keras.ops.log_softmax(keras.ops.cast(logits_model(x, training=False), "float32"), axis=-1)
    p = keras.ops.cast(model(x, training=False), "float32")
    return keras.ops.log(keras.ops.maximum(p, 1e-30))


def last_layer_jacobian(model: keras.Model, x, logits_model: keras.Model | None = None):
    """``G[b, k] = d log p_k(x_b) / d W`` for the head's kernel ``W``, shape ``(batch, K, D)`` (TensorFlow).

    One autodiff Jacobian per query (``tf.GradientTape.jacobian``, vectorised
    over the batch with ``pfor``), what the reference computes with ``K``
    backward passes per query at batch 1. ``D`` is the kernel's size.
    """
    import tensorflow as tf

    kernel = last_layer_kernel(model)
    # The backing tf.Variable: under a mixed-precision policy `kernel.value` is a float16 copy
    # inside the layer's autocast scope, which the forward pass does not read.
    variable = getattr(kernel, "_value", None)
    if variable is None:
        variable = kernel.value
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(variable)
        log_p = log_probabilities(model, x, logits_model)
    jacobian = tape.jacobian(log_p, variable)  # (batch, K) + kernel shape
    return tf.reshape(jacobian, [tf.shape(jacobian)[0], tf.shape(jacobian)[1], -1])


@register_defense("mad")
@keras.saving.register_keras_serializable(package="keras_dcp")
class MAD(SecondModelDefense):
    """MAD (maximizing angular deviation): poison the thief's gradient within an l1 budget.

    .. math::

        y^* = \\arg\\max_{v} \\left\\lVert \\frac{v - p}{\\lVert v - p \\rVert}
              - \\frac{y - p}{\\lVert y - p \\rVert} \\right\\rVert, \\qquad
        \\tilde y = (1 - a)\\,y + a\\,y^*, \\quad
        a = \\min\\left(1, \\frac{\\epsilon}{\\lVert y^* - y \\rVert_1}\\right)

    over the one-hot vertices ``v`` (or, with ``preserve_top1``, the
    MAD-argmax vertices that keep ``argmax y``), where ``p`` is the
    *surrogate*'s softmax at the same query: the angular deviation of the
    thief's last-layer gradient ``G^T v = (v - p) h^T`` (see
    :mod:`keras_dcp.ops.mad` for the derivation). The layer is called on
    ``[probabilities, inputs]``; :func:`keras_dcp.protect` wires it so.

    The surrogate: what the authors' experiment scripts pass to their code
    (``model_adv_proxy``) is the victim's architecture with random weights
    (``proxystate=scratch``); their code falls back to the victim itself when
    given none, which makes ``y = p`` and the objective undefined (the
    reference then always picks the last class). The default here (when
    ``surrogate=None``, filled in by :func:`keras_dcp.protect`) is therefore
    the victim's architecture with fresh random weights
    (``keras.models.clone_model``; seed Keras first for a reproducible one).
    It doubles the model's inference cost; that is MAD's price.

    ``objective="jacobian"`` computes ``G`` per query with autodiff
    (``tf.GradientTape`` over the surrogate's head kernel) and the objective
    from it: the faithful form, for comparison. It needs the TensorFlow
    backend (a ValueError on another) and runs in Keras and in a TensorFlow
    SavedModel, but not in TFLite (gradient ops are not TFLite builtins:
    :func:`keras_dcp.export_tflite` refuses it with a ValueError); the closed
    form gives the same answers and exports everywhere.

    Example:

    >>> import numpy as np, keras, keras_dcp
    >>> victim = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> protected = keras_dcp.protect(victim, keras_dcp.MAD(eps=0.5))
    >>> x = np.random.default_rng(0).normal(size=(2, 4)).astype("float32")
    >>> y, y_tilde = victim.predict(x, verbose=0), protected.predict(x, verbose=0)
    >>> bool((np.abs(y_tilde - y).sum(-1) <= 0.5 + 1e-6).all()), bool(np.allclose(y_tilde.sum(-1), 1))
    (True, True)

    Args:
        surrogate: the defender's stand-in for the thief's model: a Keras
            model on the same inputs with ``K`` outputs (probabilities, or
            logits), or None for the default above.
        eps: the l1 budget ``>= 0`` of each answer's move (``inf``: the vertex itself).
        preserve_top1: MAD-argmax: every answer keeps ``argmax y``.
        objective: ``"closed_form"`` (default; exportable) or ``"jacobian"``.

    Call arguments:
        inputs: ``[probabilities (batch, K), queries]``.
        training: when True the layer returns the probabilities unchanged.

    Returns:
        The defended probabilities, shape ``(batch, K)``, dtype of the input.
    """

    params = ("eps", "preserve_top1", "objective")
    model_argument = "surrogate"
    model_role = "MAD surrogate"

    def __init__(
        self,
        surrogate: keras.Model | None = None,
        eps: float = DEFAULT_EPS,
        preserve_top1: bool = False,
        objective: str = "closed_form",
        **kwargs,
    ):
        super().__init__(surrogate, **kwargs)
        self.eps = check_number("eps", eps, minimum=0.0, allow_inf=True)
        self.preserve_top1 = check_bool("preserve_top1", preserve_top1)
        self.objective = check_choice("objective", objective, OBJECTIVES)
        if self.objective == "jacobian" and keras.backend.backend() != "tensorflow":
            raise ValueError(
                "MAD(objective='jacobian') differentiates the surrogate with tf.GradientTape and needs the "
                f"TensorFlow backend (this is {keras.backend.backend()}); use objective='closed_form', "
                "which gives the same answers on every backend."
            )
        self._logits_model = None

    @classmethod
    def from_params(cls, surrogate: Any = None, **params: Any) -> "MAD":
        """From a spec: ``surrogate`` may be a path to a ``.keras`` model."""
        return cls(surrogate=load_second_model(surrogate, "MAD surrogate"), **params)

    def default_model(self, model: keras.Model) -> keras.Model:
        return fresh_copy(model, "MAD surrogate")

    @property
    def tflite_exportable(self) -> bool:
        return self.objective == "closed_form"

    def defend(self, y, x):
        if self.objective == "closed_form":
            p = self.second_model_probabilities(x)
            return defense_ops.mad(y, p, eps=self.eps, preserve_top1=self.preserve_top1)
        jacobian = last_layer_jacobian(self.surrogate, x, self._logits_of_surrogate())
        return defense_ops.mad_from_jacobian(y, jacobian, eps=self.eps, preserve_top1=self.preserve_top1)

    def _logits_of_surrogate(self):
        """The surrogate up to its logits when it ends in a Softmax layer (shares its layers), else None."""
        if self._logits_model is None and not self._from_logits:
            last = self.surrogate.layers[-1] if getattr(self.surrogate, "layers", None) else None
            if isinstance(last, keras.layers.Softmax) and getattr(self.surrogate, "inputs", None):
                # Not tracked as a sublayer: it adds no weights and is rebuilt after loading.
                object.__setattr__(self, "_logits_model", keras.Model(self.surrogate.inputs, last.input))
        if self._from_logits:
            return self.surrogate
        return self._logits_model
