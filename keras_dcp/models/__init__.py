"""The model zoo: victims and clones for the experiments.

Every builder returns an *uncompiled* functional :class:`keras.Model` that

* takes float32 images in ``[0, 1]``, NHWC, shape ``(batch, H, W, C)``
  (:func:`keras_dcp.data.to_float` makes them from uint8), and rescales them
  to ``[-1, 1]`` in its first layer (``x -> 2x - 1``), so callers never
  normalise by hand;
* ends in a :class:`keras.layers.Softmax` layer named ``"probabilities"``:
  the output is a probability row per image, shape ``(batch, num_classes)``,
  which is what :func:`keras_dcp.protect` and the attacks expect;
* is built from plain Keras 3 layers only, so it runs under every Keras
  backend (TensorFlow, JAX, PyTorch).

>>> from keras_dcp import models
>>> model = models.resnet20(input_shape=(32, 32, 3), num_classes=10)  # doctest: +SKIP
>>> model.output_shape  # doctest: +SKIP
(None, 10)
"""

from keras_dcp.models.mobilenet import mobilenet_v2
from keras_dcp.models.resnet import cifar_resnet, resnet20, resnet32
from keras_dcp.models.small_cnn import small_cnn

#: Architecture name -> builder(input_shape=..., num_classes=...). The CLI and
#: the runner look names up here.
ARCHITECTURES = {
    "resnet20": resnet20,
    "resnet32": resnet32,
    "small_cnn": small_cnn,
    "mobilenet_v2": mobilenet_v2,
}


def get_model(name, input_shape=(32, 32, 3), num_classes=10, **kwargs):
    """Build the zoo model called ``name`` (see :data:`ARCHITECTURES`).

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    key = name.strip().lower().replace("-", "_")
    if key not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {name!r}; choose from {', '.join(ARCHITECTURES)}.")
    return ARCHITECTURES[key](input_shape=tuple(input_shape), num_classes=int(num_classes), **kwargs)


__all__ = [
    "ARCHITECTURES",
    "cifar_resnet",
    "get_model",
    "mobilenet_v2",
    "resnet20",
    "resnet32",
    "small_cnn",
]
