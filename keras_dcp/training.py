"""Train a zoo classifier the way the DCP and KnockoffNets papers train victims.

SGD with Nesterov momentum 0.9, weight decay ``5e-4``, a cosine learning-rate
schedule, random-crop (4 px zero padding) and horizontal-flip augmentation,
sparse cross-entropy on the model's probabilities, a checkpoint every epoch
and resumption from it. Only Keras 3 and NumPy are used, so it runs under any
Keras backend (TensorFlow, JAX, PyTorch); a ``tf.distribute`` strategy or a
``keras.distribution`` can be passed for several accelerators.
"""

from __future__ import annotations

import json
import math
import os

import keras
import numpy as np

from keras_dcp.augment import random_crop_flip
from keras_dcp.data.images import to_float
from keras_dcp.validation import check_int, check_positive

#: File names inside ``checkpoint_dir``.
CHECKPOINT_WEIGHTS = "checkpoint.weights.h5"
CHECKPOINT_STATE = "checkpoint.json"


#: uint8 ``[0, 255]`` -> float32 ``[0, 1]`` (the package's one converter, :func:`keras_dcp.data.to_float`).
to_float_images = to_float

#: Random crop after zero padding + horizontal flip (:func:`keras_dcp.augment.random_crop_flip`).
augment_batch = random_crop_flip


class AugmentedImages(keras.utils.PyDataset):
    """Shuffled, augmented batches of ``(x, y)`` as a :class:`keras.utils.PyDataset`.

    Each epoch draws a new permutation and new crops from a generator seeded
    by ``(seed, epoch)``, so a run is reproducible and a resumed run sees the
    same batches as an uninterrupted one.
    """

    def __init__(self, x, y, batch_size, augment=True, flip=True, pad=4, seed=0, epoch=0):
        super().__init__()
        self.x = x
        self.y = y
        self.batch_size = int(batch_size)
        self.augment = augment
        self.flip = flip
        self.pad = pad
        self.seed = seed
        self.epoch = epoch
        self._start_epoch()

    def _start_epoch(self):
        self._rng = np.random.default_rng([self.seed, self.epoch])
        self._order = self._rng.permutation(len(self.x))

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        rows = np.sort(self._order[index * self.batch_size:(index + 1) * self.batch_size])
        x = to_float(self.x[rows])
        if self.augment:
            # One generator per (seed, epoch, batch): batches can be fetched in any order.
            rng = np.random.default_rng([self.seed, self.epoch, index])
            x = random_crop_flip(x, rng, pad=self.pad, flip=self.flip)
        return x, self.y[rows]

    def on_epoch_end(self):
        self.epoch += 1
        self._start_epoch()


class _EpochCheckpoint(keras.callbacks.Callback):
    """Save weights, optimizer state and the epoch number after each epoch.

    Keras' ``save_weights`` of a compiled model also stores the optimizer's
    variables (momentum buffers and the step count that drives the cosine
    schedule), so a resumed run continues exactly where it stopped.
    """

    def __init__(self, directory):
        super().__init__()
        self.directory = directory

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.directory, exist_ok=True)
        weights = os.path.join(self.directory, CHECKPOINT_WEIGHTS)
        state = os.path.join(self.directory, CHECKPOINT_STATE)
        # Write to temporary names first so an interruption never leaves a
        # half-written checkpoint behind.
        self.model.save_weights(weights + ".tmp.weights.h5")
        with open(state + ".tmp", "w") as handle:
            json.dump({"epochs_done": epoch + 1, "logs": {k: float(v) for k, v in (logs or {}).items()}}, handle)
        os.replace(weights + ".tmp.weights.h5", weights)
        os.replace(state + ".tmp", state)


def _restore(model, directory):
    """Load a checkpoint of :class:`_EpochCheckpoint`; return the epochs already done (0 if none)."""
    state = os.path.join(directory, CHECKPOINT_STATE)
    if not os.path.exists(state):
        return 0
    with open(state) as handle:
        epochs_done = int(json.load(handle)["epochs_done"])
    # The optimizer must exist before loading, or its saved state is skipped.
    model.optimizer.build(model.trainable_variables)
    try:
        model.load_weights(os.path.join(directory, CHECKPOINT_WEIGHTS))
    except ValueError as error:
        raise ValueError(
            f"The checkpoint in {directory!r} does not match this model ({error}). "
            "Delete the folder to start over."
        ) from None
    return epochs_done


def make_optimizer(learning_rate, total_steps, momentum=0.9, weight_decay=5e-4, warmup_steps=0):
    """SGD + Nesterov momentum with a cosine schedule from ``learning_rate`` to 0.

    .. math::

        \\eta_t = \\frac{\\eta_0}{2}\\left(1 + \\cos\\frac{\\pi t}{T}\\right)

    over ``T = total_steps`` steps. Weight decay is decoupled
    (``w <- w - eta_t * wd * w`` each step, Keras' ``weight_decay``) and skips
    biases and BatchNorm parameters.
    """
    schedule = keras.optimizers.schedules.CosineDecay(
        learning_rate, decay_steps=max(1, int(total_steps)), alpha=0.0,
        warmup_target=None, warmup_steps=int(warmup_steps),
    )
    optimizer = keras.optimizers.SGD(
        learning_rate=schedule, momentum=momentum, nesterov=True, weight_decay=weight_decay,
    )
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def _check_inputs(x, y, epochs, batch_size, learning_rate):
    x = np.asarray(x)
    y = np.asarray(y).reshape(-1).astype("int64")
    if x.ndim != 4:
        raise ValueError(f"`x` must be images of shape (n, height, width, channels); got shape {x.shape}.")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"`x` and `y` must hold the same number (> 0) of rows; got {len(x)} and {len(y)}.")
    check_int("epochs", epochs, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    check_positive("learning_rate", learning_rate)
    return x, y


def train_classifier(
    model,
    x,
    y,
    epochs,
    batch_size=128,
    learning_rate=0.1,
    augment=True,
    strategy=None,
    checkpoint_dir=None,
    validation_data=None,
    seed=0,
    verbose=1,
    flip=True,
    weight_decay=5e-4,
    momentum=0.9,
):
    """Train ``model`` (probabilities out) on integer labels, in place.

    Minimises the mean cross-entropy ``-log p_model(y_i | x_i)`` with SGD
    (Nesterov momentum, decoupled weight decay, cosine schedule over
    ``epochs * ceil(n / batch_size)`` steps; see :func:`make_optimizer`).

    Args:
        model: a ``keras.Model`` whose output is ``(batch, K)`` probabilities
            (every :mod:`keras_dcp.models` builder). It is compiled here.
        x: images ``(n, H, W, C)``, uint8 ``[0, 255]`` or float ``[0, 1]``.
        y: int labels ``(n,)`` in ``[0, K)``.
        epochs: number of epochs, >= 1.
        batch_size: global batch size (split across replicas under a strategy).
        learning_rate: initial learning rate ``eta_0``.
        augment: random crop with 4 px padding (+ flip, see ``flip``).
        strategy: optional ``tf.distribute.Strategy`` (e.g.
            ``MirroredStrategy()``) or ``keras.distribution.Distribution``
            (e.g. ``DataParallel()`` under JAX). The model is rebuilt in its
            scope, trained there, and its weights copied back into ``model``.
        checkpoint_dir: if set, weights, optimizer state and epoch count are
            saved there after every epoch, and a later call with the same
            folder resumes after the last finished epoch.
        validation_data: optional ``(x_val, y_val)`` evaluated each epoch.
        seed: seeds Keras (weights of layers built here, dropout) and the
            shuffling/augmentation.
        verbose: 0 silent, 1 progress bar, 2 one line per epoch.
        flip: random horizontal flips (turn off for digits, text, signs).
        weight_decay: decoupled weight decay, default ``5e-4``.
        momentum: SGD momentum, default 0.9.

    Returns:
        A ``dict`` of per-epoch metrics (``keras.callbacks.History.history``)
        for the epochs run by this call.

    Raises:
        ValueError: for mismatched or malformed inputs.
    """
    return _fit(
        model, x, y, keras.losses.SparseCategoricalCrossentropy(from_logits=False), epochs, batch_size,
        learning_rate, augment, strategy, checkpoint_dir, validation_data, seed, verbose, flip, weight_decay,
        momentum,
    )


def _fit(model, x, y, loss, epochs, batch_size, learning_rate, augment, strategy, checkpoint_dir,
         validation_data, seed, verbose, flip, weight_decay, momentum):
    """The training loop :func:`train_classifier` and :func:`train_misinformation` share."""
    x, y = _check_inputs(x, y, epochs, batch_size, learning_rate)
    if not model.trainable_weights:
        raise ValueError(
            f"Model {model.name!r} has no trainable weights (trainable=False, e.g. frozen inside a defense "
            "layer): set model.trainable = True before training it."
        )
    num_classes = model.output_shape[-1]
    if y.min() < 0 or y.max() >= num_classes:
        raise ValueError(f"Labels must be in [0, {num_classes}) for this model; got range [{y.min()}, {y.max()}].")
    keras.utils.set_random_seed(seed)
    steps_per_epoch = math.ceil(len(x) / batch_size)

    trained = model
    if strategy is not None:
        with strategy.scope():
            trained = keras.models.clone_model(model)
            trained.set_weights(model.get_weights())
            _compile(trained, loss, learning_rate, epochs * steps_per_epoch, momentum, weight_decay)
    else:
        _compile(trained, loss, learning_rate, epochs * steps_per_epoch, momentum, weight_decay)

    initial_epoch = 0
    callbacks = []
    if checkpoint_dir:
        initial_epoch = _restore(trained, checkpoint_dir)
        callbacks.append(_EpochCheckpoint(checkpoint_dir))
        if initial_epoch and verbose:
            print(f"Resuming from {checkpoint_dir}: {initial_epoch}/{epochs} epochs done.")
    history = {}
    if initial_epoch < epochs:
        data = AugmentedImages(x, y, batch_size, augment=augment, flip=flip, seed=seed, epoch=initial_epoch)
        if validation_data is not None:
            x_val, y_val = validation_data
            validation_data = (to_float(x_val), np.asarray(y_val).reshape(-1).astype("int64"))
        result = trained.fit(
            data,
            epochs=epochs,
            initial_epoch=initial_epoch,
            validation_data=validation_data,
            callbacks=callbacks,
            verbose=verbose,
        )
        history = result.history
    if trained is not model:
        model.set_weights(trained.get_weights())
    return history


def _compile(model, loss, learning_rate, total_steps, momentum, weight_decay):
    model.compile(
        optimizer=make_optimizer(learning_rate, total_steps, momentum=momentum, weight_decay=weight_decay),
        loss=loss,
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )


@keras.saving.register_keras_serializable(package="keras_dcp")
def misinformation_loss(y_true, y_pred):
    """Adaptive Misinformation's loss: ``-log(1 - f^(x)_y + 1e-7)`` per row (``y_pred`` probabilities).

    Minimal where the model puts no mass on the true class. The authors' code
    writes it as the cross-entropy of ``log(1 - f^(x) + 1e-7)``, which adds
    the constant ``log sum_k (1 - f^(x)_k)`` (about ``log(K - 1)``): the same gradient.
    """
    probabilities = keras.ops.cast(y_pred, "float32")
    labels = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
    p_true = keras.ops.sum(probabilities * keras.ops.one_hot(labels, probabilities.shape[-1]), axis=-1)
    return -keras.ops.log(keras.ops.maximum(1.0 - p_true + 1e-7, 1e-7))


def train_misinformation(
    model,
    x,
    y,
    epochs,
    batch_size=128,
    learning_rate=0.1,
    augment=True,
    strategy=None,
    checkpoint_dir=None,
    validation_data=None,
    seed=0,
    verbose=1,
    flip=True,
    weight_decay=5e-4,
    momentum=0.9,
):
    """Train Adaptive Misinformation's ``f^`` in place: put little mass on the true class.

    Minimises the mean of :func:`misinformation_loss`,
    ``-log(1 - f^(x_i)_{y_i})``, over the defender's labelled images, with the
    same optimizer, schedule, augmentation and checkpointing as
    :func:`train_classifier` (same arguments). Pass the victim's training
    images and labels; the authors also add out-of-distribution images
    labelled with the victim's top class (outlier exposure): concatenate them
    to ``x``, ``y``. The history's ``accuracy`` is ``mean [argmax f^(x) = y]``,
    which training drives toward 0. Use the result with
    :class:`keras_dcp.AdaptiveMisinformation`.

    Args:
        model: ``f^``, a ``keras.Model`` with probabilities out, typically the
            victim's architecture with fresh weights
            (``keras.models.clone_model(victim)``). It is compiled here.
        x, y: images ``(n, H, W, C)`` (uint8 or float ``[0, 1]``) and int labels ``(n,)``.
        epochs ...: as :func:`train_classifier`.

    Returns:
        The per-epoch metrics of this call (``History.history``).
    """
    return _fit(
        model, x, y, misinformation_loss, epochs, batch_size, learning_rate, augment, strategy,
        checkpoint_dir, validation_data, seed, verbose, flip, weight_decay, momentum,
    )


def accuracy(model, x, y, batch_size=256):
    """Top-1 accuracy of ``model`` (probabilities or logits out) on ``(x, y)``: mean ``[argmax f(x_i) = y_i]``."""
    probabilities = model.predict(to_float(x), batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=-1) == np.asarray(y).reshape(-1)))


__all__ = [
    "AugmentedImages",
    "accuracy",
    "augment_batch",
    "make_optimizer",
    "misinformation_loss",
    "to_float_images",
    "train_classifier",
    "train_misinformation",
]
