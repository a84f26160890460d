"""Int8 that matches the float model the user tested: quantization-aware distillation.

A user evaluates the float protected model ``D(f(x))`` and ships int8. For the
evaluation to describe what ships, the int8 model must give the same answers:
the same accuracy for benign users and the same defended answers for thieves.
Post-training quantization moves the backbone's logits enough to flip DCP's
detector on a few percent of attacker-like queries; plain QAT on labels
trains a *different* model (it loses accuracy and drifts from ``f``).

Here the QAT model ``g`` (tfmot fake quant, :func:`keras_dcp.qat.quantize_model`,
initialised from ``f``'s weights) is trained to reproduce the float model
itself, on the defender's own images (the training set and mixup blends of
it, where a model hesitates as it does on a thief's queries):

.. math::

    \\mathcal L_{logits} = \\frac1{nK} \\sum_i \\lVert c(z^g_i) - c(z^f_i) \\rVert_2^2,
    \\qquad c(z) = z - \\tfrac1K \\textstyle\\sum_k z_k

(centered logits: softmax is invariant to a per-row constant), or
``loss="kl"``: ``KL(softmax(z^f) || softmax(z^g))``. Logits carry the small
probabilities that DCP's noise reads through ``log y``. Then the biases are
aligned to the int8 grid (:func:`keras_dcp.qat.align_biases`), the defense's
tf_keras twin is appended, and the model is exported with the float defense
tail (:func:`keras_dcp.qat.convert_qat`). With several seeds the export
closest to the *original float protected model* on mixup check images is kept.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from keras_dcp.qat.alignment import align_biases
from keras_dcp.qat.calibration import calibrate_ranges
from keras_dcp.qat.conversion import to_tf_keras
from keras_dcp.qat.export import convert_qat
from keras_dcp.qat.quantize import quantize_model
from keras_dcp.qat.selection import mixup_images
from keras_dcp.qat.train import protect_qat
from keras_dcp.qat.twins import tf_keras_module
from keras_dcp.validation import check_choice, check_int, check_number, check_positive

LOSSES = ("logits", "kl")


def split_protected_keras(protected: Any) -> tuple[Any, Any]:
    """``(classifier, defense)`` of a Keras 3 protected model ``defense(classifier(x))``.

    ``classifier`` ends in the probabilities the defense reads. Raises
    ValueError unless the last layer is a keras_dcp defense on probabilities.
    """
    import keras

    from keras_dcp.defenses.base import OutputDefense

    if not isinstance(protected, keras.Model) or not protected.layers:
        raise ValueError(f"Expected a Keras 3 protected model; got {type(protected).__name__}.")
    defense = protected.layers[-1]
    if not isinstance(defense, OutputDefense) or defense.input_kind != "probabilities":
        raise ValueError(
            f"The last layer of {protected.name!r} is not a keras_dcp defense on probabilities "
            "(protect the model with keras_dcp.protect first)."
        )
    return keras.Model(protected.inputs, defense.input, name=f"{protected.name}_classifier"), defense


def _with_softmax_layer(classifier):
    """The classifier as ``Softmax(logits(x))`` with a separate Softmax layer (what the QAT split needs)."""
    import keras

    if isinstance(classifier.layers[-1], keras.layers.Softmax):
        return classifier
    from keras_dcp.protect import logits_tensor

    inputs, logits = logits_tensor(classifier)
    return keras.Model(inputs, keras.layers.Softmax(name="probabilities")(logits), name=classifier.name)


def _logits_model_keras(classifier):
    import keras

    from keras_dcp.protect import logits_tensor

    inputs, logits = logits_tensor(classifier)
    return keras.Model(inputs, logits)


def _logits_model_qat(qat_model):
    """The tf_keras QAT model up to the input of its (wrapped) Softmax: the student's logits."""
    tf_keras = tf_keras_module()
    for layer in reversed(qat_model.layers):
        if isinstance(getattr(layer, "layer", layer), tf_keras.layers.Softmax):
            return tf_keras.Model(qat_model.inputs, layer.input)
    raise ValueError("The QAT model has no Softmax layer; cannot reach its logits.")


def distillation_data(teacher: Any, x: np.ndarray, mixup: float = 1.0, seed: int = 0, batch_size: int = 500):
    """``(images, teacher logits)``: ``x`` plus ``round(mixup * len(x))`` mixup blends, and ``f``'s logits on them.

    ``teacher`` is a Keras 3 classifier ending in a softmax. Shapes:
    ``(n (1 + mixup), H, W, C)`` float32 and ``(n (1 + mixup), K)`` float32.
    """
    x = np.asarray(x, "float32")
    extra = int(round(mixup * len(x)))
    images = np.concatenate([x, mixup_images(x, extra, seed=seed)]) if extra else x
    logits = _logits_model_keras(teacher).predict(images, batch_size=batch_size, verbose=0)
    return images, np.asarray(logits, "float32")


def distill_qat(
    qat_model: Any,
    images: np.ndarray,
    teacher_logits: np.ndarray,
    epochs: int = 2,
    batch_size: int = 128,
    learning_rate: float = 1e-4,
    loss: str = "logits",
    seed: int = 0,
    verbose: int = 1,
    align: bool = True,
) -> dict[str, Any]:
    """Train a QAT model (in place) to reproduce a float teacher's logits; see the module docstring.

    Args:
        qat_model: a tf_keras QAT classifier (:func:`keras_dcp.qat.quantize_model`).
        images: inputs ``(n, ...)`` as the model takes them.
        teacher_logits: ``(n, K)`` logits of the float model on ``images``
            (:func:`distillation_data`).
        epochs, batch_size, learning_rate: Adam fine-tuning.
        loss: ``"logits"`` (centered-logit MSE) or ``"kl"``.
        seed: data order.
        verbose: Keras fit verbosity.
        align: move the biases onto the int8 grid afterwards (:func:`keras_dcp.qat.align_biases`).

    Returns:
        The Keras ``History.history`` dict (with ``"aligned_layers"``).
    """
    import tensorflow as tf

    tf_keras = tf_keras_module()
    check_choice("loss", loss, LOSSES)
    epochs = check_int("epochs", epochs, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    learning_rate = check_positive("learning_rate", learning_rate)
    images = np.asarray(images, "float32")
    teacher_logits = np.asarray(teacher_logits, "float32")
    if len(images) != len(teacher_logits) or not len(images):
        raise ValueError(f"images ({len(images)}) and teacher_logits ({len(teacher_logits)}) must match and be > 0.")
    student = _logits_model_qat(qat_model)
    # Batch norm stays on its moving statistics (the ones the int8 model folds
    # in): in training mode it would normalise with batch statistics, so the
    # student would be fitted as a different function from the one exported.
    for layer in qat_model.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, tf_keras.layers.BatchNormalization):
            inner.trainable = False

    def centered(z):
        return z - tf.reduce_mean(z, axis=-1, keepdims=True)

    if loss == "logits":
        def objective(target, output):
            return tf.reduce_mean(tf.square(centered(output) - centered(target)), axis=-1)
    else:
        def objective(target, output):
            return tf_keras.losses.kl_divergence(tf.nn.softmax(target), tf.nn.softmax(output))

    tf_keras.utils.set_random_seed(seed)
    student.compile(optimizer=tf_keras.optimizers.Adam(learning_rate), loss=objective)
    data = tf.data.Dataset.from_tensor_slices((images, teacher_logits))
    data = data.shuffle(len(images), seed=seed).batch(batch_size)
    history = dict(student.fit(data, epochs=epochs, verbose=verbose).history)
    if align:
        history["aligned_layers"] = sorted(align_biases(qat_model))
    return history


def faithful_int8(
    protected: Any,
    x_train: np.ndarray,
    io_type: str = "int8",
    epochs: int = 2,
    batch_size: int = 128,
    learning_rate: float = 1e-4,
    loss: str = "logits",
    mixup: float = 1.0,
    seeds: Sequence[int] = (0,),
    check_rows: int = 2000,
    calibration_rows: int = 1000,
    calibration: np.ndarray | None = None,
    max_train: int | None = None,
    verbose: int = 1,
    return_model: bool = False,
) -> tuple[bytes, dict[str, Any]]:
    """An int8 ``.tflite`` of a Keras 3 protected model that reproduces its float answers.

    The whole path: split ``protected`` into classifier ``f`` and defense
    ``D``; per seed, ``g = quantize_model(to_tf_keras(f))``, its ranges
    calibrated on the data (:func:`keras_dcp.qat.calibrate_ranges`), distilled from ``f``
    on ``x_train`` and its mixup blends (:func:`distill_qat`), biases aligned,
    ``D``'s twin appended, exported with the float defense tail; the export
    whose defended output is closest to ``D(f(x))`` on ``check_rows`` mixup
    check images (new blends, never trained on) is returned.

    Args:
        protected: a Keras 3 model from :func:`keras_dcp.protect` (defense on probabilities).
        x_train: the defender's training images, as the model takes them (float in [0, 1] for the zoo).
        io_type: ``"int8"`` or ``"float"`` input/output.
        epochs, batch_size, learning_rate, loss, mixup: see :func:`distill_qat`
            and :func:`distillation_data`; ``epochs=0`` exports the calibrated,
            untrained QAT model (post-training quantization through this path).
        seeds: one candidate per seed (data order and mixup pairs).
        check_rows: mixup check images for the choice between candidates.
        calibration_rows: images that set the QAT model's ranges before
            training (:func:`keras_dcp.qat.calibrate_ranges`), drawn from the
            distillation images unless ``calibration`` is given.
        calibration: optional calibration images instead (e.g. the user's
            representative set).
        max_train: use at most this many training images (a seeded subset).
        verbose: progress lines.
        return_model: also return the chosen protected tf_keras QAT model
            (to export it again, e.g. with the other I/O type).

    Returns:
        ``(tflite bytes, report)``; per candidate the report gives, on the check
        images, the export against the original float protected model
        (``export_vs_float``, what selection minimises), the export against its
        own QAT Keras model (``export_vs_qat_keras``) and that Keras model
        against the float one (``qat_keras_vs_float``); and the chosen seed.
    """
    from keras_dcp.tflite.fidelity import compare_outputs, fidelity

    check_choice("io_type", io_type, ("int8", "float"))
    check_number("mixup", mixup, minimum=0.0)
    epochs = check_int("epochs", epochs, minimum=0)
    seeds = [check_int("seed", seed) for seed in seeds]
    if not seeds:
        raise ValueError("`seeds` must name at least one seed.")
    classifier, defense = split_protected_keras(protected)
    classifier = _with_softmax_layer(classifier)
    x_train = np.asarray(x_train, "float32")
    if max_train is not None and max_train < len(x_train):
        rows = np.sort(np.random.default_rng(0).choice(len(x_train), size=int(max_train), replace=False))
        x_train = x_train[rows]
    check = mixup_images(x_train, check_rows, seed=10_000 + seeds[0])
    float_answers = protected.predict(check, batch_size=500, verbose=0)
    candidates = []
    for seed in seeds:
        images, teacher_logits = distillation_data(classifier, x_train, mixup=mixup, seed=seed)
        qat_model = quantize_model(to_tf_keras(classifier))
        if calibration is None:
            calibrate_ranges(qat_model, images[np.random.default_rng(seed).permutation(len(images))[:calibration_rows]])
        else:
            calibrate_ranges(qat_model, np.asarray(calibration, "float32")[:calibration_rows])
        if epochs:
            history = distill_qat(qat_model, images, teacher_logits, epochs=epochs, batch_size=batch_size,
                                  learning_rate=learning_rate, loss=loss, seed=seed, verbose=verbose)
        else:  # the calibrated model as it is: post-training quantization through the QAT path
            history = {"loss": [float("nan")], "aligned_layers": sorted(align_biases(qat_model))}
        qat_protected = protect_qat(qat_model, defense)
        content = convert_qat(qat_protected, io_type=io_type)
        qat_answers = np.asarray(qat_protected.predict(check, batch_size=500, verbose=0))
        candidates.append({
            "seed": seed,
            "content": content,
            "model": qat_protected,
            "export_vs_float": fidelity(content, float_answers, check),
            "export_vs_qat_keras": fidelity(content, qat_answers, check),
            "qat_keras_vs_float": compare_outputs(qat_answers, float_answers),
            "final_loss": float(history["loss"][-1]),
            "aligned_layers": len(history.get("aligned_layers", [])),
        })
    best = min(candidates, key=lambda c: (c["export_vs_float"]["mean_l1"], -c["export_vs_float"]["agreement"]))
    report = {
        "chosen_seed": best["seed"],
        "check_rows": int(check_rows),
        "train_rows": int(len(x_train)),
        "settings": {"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate, "loss": loss,
                     "mixup": mixup, "io_type": io_type},
        "candidates": [{k: v for k, v in c.items() if k not in ("content", "model")} for c in candidates],
    }
    if return_model:
        return best["content"], report, best["model"]
    return best["content"], report


__all__ = ["LOSSES", "distill_qat", "distillation_data", "faithful_int8", "split_protected_keras"]
