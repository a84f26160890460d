"""Pick, among QAT runs, the one whose int8 export best reproduces its Keras model.

After :func:`keras_dcp.qat.align_biases` the Keras QAT model and its int8
export add the same biases, and what still separates them is the int8
kernels' rounding: where a value lies within float error of a rounding
boundary the two round differently, and each layer spreads those one-step
differences. How far they spread depends on the trained weights, so QAT runs
that differ only in their seed (data order, training noise) differ in
fidelity: on our ResNet-20, five runs gave mean l1 from 0.017 to 0.036 on
Tiny-ImageNet queries (docs/results/tflite.md). :func:`most_faithful` scores
each candidate on check images the defender has (not the attacker's queries)
and returns the best:

    score(m) = (mean_l1(m), -agreement(m))      (lexicographic, smaller is better)

with agreement and mean l1 of the protected int8 export against the
protected Keras model (:func:`keras_dcp.tflite.fidelity`). Natural images on
which the model hesitates carry the most signal; :func:`mixup_images` makes
such images from a training set: ``x = lambda a + (1 - lambda) b`` for random
pairs ``(a, b)`` and ``lambda`` uniform in ``[0.3, 0.7]``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from keras_dcp.qat.export import convert_qat
from keras_dcp.qat.train import protect_qat
from keras_dcp.tflite.fidelity import fidelity
from keras_dcp.validation import check_int


def mixup_images(x: np.ndarray, n: int, seed: int = 0, low: float = 0.3, high: float = 0.7) -> np.ndarray:
    """``n`` blends ``lambda a + (1 - lambda) b`` of random pairs of ``x`` (float, shape ``(n, ...)``).

    Raises:
        ValueError: for fewer than two images, ``n < 1``, or ``not 0 <= low <= high <= 1``.
    """
    x = np.asarray(x, "float32")
    if x.ndim < 2 or len(x) < 2:
        raise ValueError(f"mixup_images() needs at least two images (n, ...); got shape {x.shape}.")
    n = check_int("n", n, minimum=1)
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"need 0 <= low <= high <= 1; got low={low}, high={high}.")
    rng = np.random.default_rng(seed)
    first = rng.integers(0, len(x), n)
    second = (first + rng.integers(1, len(x), n)) % len(x)  # never the same image twice
    lam = rng.uniform(low, high, size=(n,) + (1,) * (x.ndim - 1)).astype("float32")
    return lam * x[first] + (1.0 - lam) * x[second]


def most_faithful(
    candidates: Sequence[Any], x_check: np.ndarray, defense: Any = None, io_type: str = "int8"
) -> tuple[int, list[dict[str, float]]]:
    """The candidate QAT model whose protected int8 export is closest to its protected Keras model.

    Args:
        candidates: tf_keras QAT classifiers (from :func:`keras_dcp.qat.quantize_model`
            and :func:`keras_dcp.qat.train_qat`), at least one.
        x_check: inputs to compare on, ``(n, ...)``, as the models take them;
            not the data the result will be judged on.
        defense: the Keras 3 defense layer to append (default ``DeceptionLayer()``).
        io_type: ``"int8"`` or ``"float"`` input/output of the export.

    Returns:
        ``(index, scores)``: the best candidate's index and, per candidate,
        ``{"agreement", "mean_l1", "rows"}`` on ``x_check``.

    Raises:
        ValueError: for no candidates.
    """
    candidates = list(candidates)
    if not candidates:
        raise ValueError("most_faithful() needs at least one candidate model.")
    scores = []
    for model in candidates:
        protected = protect_qat(model, defense)
        content = convert_qat(protected, io_type=io_type)
        scores.append(fidelity(content, protected, x_check))
    best = min(range(len(scores)), key=lambda i: (scores[i]["mean_l1"], -scores[i]["agreement"]))
    return best, scores


__all__ = ["mixup_images", "most_faithful"]
