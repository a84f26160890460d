"""keras-dcp: the Deception defense against model stealing, as Keras layers.

>>> import keras_dcp
>>> protected = keras_dcp.protect(model, keras_dcp.DeceptionLayer(beta=0.7, gamma=0.2))  # doctest: +SKIP
"""

__version__ = "0.1.0"

import os as _os
import sys as _sys

if _sys.argv and _os.path.basename(_sys.argv[0]) == "keras-dcp":
    # The command line: keep TensorFlow's C++ start-up chatter out of the user's terminal.
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_dcp import ops
from keras_dcp.defenses import (
    MAD,
    AdaptiveMisinformation,
    DeceptionLayer,
    EdgeTPUDeception,
    KeyedDeception,
    OutputDefense,
    ReverseSigmoid,
    Rounding,
    TopK,
    TopLabel,
)
from keras_dcp.defenses.registry import build_defense, parse_spec
from keras_dcp.protect import protect

_SUBMODULES = ("attacks", "data", "experiments", "models", "qat", "tflite", "training")


def __getattr__(name):
    # Heavier parts load on first use: keras_dcp.attacks, keras_dcp.models, ...
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"keras_dcp.{name}")
    if name == "export_tflite":
        from keras_dcp.tflite import export_tflite

        return export_tflite
    raise AttributeError(f"module 'keras_dcp' has no attribute {name!r}")


__all__ = [
    "MAD",
    "AdaptiveMisinformation",
    "DeceptionLayer",
    "EdgeTPUDeception",
    "KeyedDeception",
    "OutputDefense",
    "ReverseSigmoid",
    "Rounding",
    "TopK",
    "TopLabel",
    "__version__",
    "build_defense",
    "export_tflite",
    "ops",
    "parse_spec",
    "protect",
]
