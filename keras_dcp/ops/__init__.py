"""The defense math, once: pure functions over ``keras.ops``.

Every layer (Keras 3 and the tf_keras twin used for QAT), exporter and tool
calls these functions, so this module is the one place to read and fix the
equations. All functions take a batch of probability rows ``y`` of shape
``(batch, K)`` and return a tensor of the same shape. They compute in float32
and cast the result back to the input dtype, so they are safe under mixed
precision; under the TensorFlow backend they lower to plain TF ops (and from
there to TFLite builtins).

Rows that are not distributions
-------------------------------
A served model must never crash on odd input, and must never answer silently
wrong. Every function here:

* returns a row whose sum is NaN (it holds a NaN, or both +inf and -inf) as
  all NaN ("NaN stays NaN");
* returns a batch of zero rows as it came, shape ``(0, K)``;
* refuses integer and bool inputs with a ``ValueError`` (they do not say
  which distribution they stand for).

The perturbing defenses (:func:`deception`, :func:`reverse_sigmoid`,
:func:`mad`, :func:`adaptive_misinformation`) also return a valid row
(entries >= 0, sum within ``SUM_TOLERANCE`` of 1, as a softmax gives) that
they leave alone (the detector's ``alpha == 0``, MAD's ``eps == 0``)
bit-identical, and defend every other row on ``s = clip(y, 0, 1)`` (negative entries count as
0, ``+inf`` as 1), renormalised, so the output is a finite distribution that
sums to 1 (an all-zero row becomes uniform ``1/K``); :func:`top_k` sanitises
the same way.

For speed the row statistics (sum, min, max) are read once from the input,
and the detector uses ``clip(max y, 0, 1) = max clip(y, 0, 1)``.

The baselines that need a second model's answer at the same query take it as
a second argument: :func:`mad` (the surrogate's probabilities) and
:func:`adaptive_misinformation` (the misinformation model's); a NaN there
also gives a NaN row.

One module per family, all re-exported here: :mod:`~keras_dcp.ops.rows` (the
shared conventions), :mod:`~keras_dcp.ops.deception` (DCP, reverse sigmoid),
:mod:`~keras_dcp.ops.truncation` (rounding, top-1, top-k),
:mod:`~keras_dcp.ops.keyed` (keyed DCP: secret per-input label moves),
:mod:`~keras_dcp.ops.edgetpu` (DCP from logits with Edge TPU ops),
:mod:`~keras_dcp.ops.mad` (MAD, Prediction Poisoning) and
:mod:`~keras_dcp.ops.misinformation` (Adaptive Misinformation).
"""

from keras_dcp.ops.deception import (
    deception,
    detector,
    keep_top1,
    limit_l1,
    noise_from_logit,
    reverse_sigmoid,
    reverse_sigmoid_noise,
    top1_margin,
)
from keras_dcp.ops.edgetpu import (
    EDGETPU_LOG1M_POINTS,
    EDGETPU_LOG_POINTS,
    EDGETPU_RECIPROCAL_POINTS,
    deception_edgetpu,
)
from keras_dcp.ops.keyed import energy, keyed_deception, keyed_uniforms
from keras_dcp.ops.mad import jacobian_objective, mad, mad_from_jacobian, mad_objective, mad_target
from keras_dcp.ops.misinformation import adaptive_misinformation
from keras_dcp.ops.rows import PROB_CEIL, PROB_FLOOR, SUM_TOLERANCE, first_argmax, sanitize
from keras_dcp.ops.truncation import rounding, top_k, top_label

__all__ = [
    "EDGETPU_LOG1M_POINTS",
    "EDGETPU_LOG_POINTS",
    "EDGETPU_RECIPROCAL_POINTS",
    "PROB_CEIL",
    "PROB_FLOOR",
    "SUM_TOLERANCE",
    "adaptive_misinformation",
    "deception",
    "deception_edgetpu",
    "detector",
    "energy",
    "first_argmax",
    "jacobian_objective",
    "keep_top1",
    "keyed_deception",
    "keyed_uniforms",
    "limit_l1",
    "mad",
    "mad_from_jacobian",
    "mad_objective",
    "mad_target",
    "noise_from_logit",
    "reverse_sigmoid",
    "reverse_sigmoid_noise",
    "rounding",
    "sanitize",
    "top1_margin",
    "top_k",
    "top_label",
]
