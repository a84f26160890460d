"""Quantization-aware training (QAT) with tensorflow-model-optimization.

tfmot 0.8 only accepts tf_keras (Keras 2) models, while keras-dcp is Keras 3.
This package provides, one module each:

* :mod:`~keras_dcp.qat.twins`: the tf_keras twins of the defense layers
  (:func:`twin_class`, :func:`twin_of`): same constructor arguments and
  checks, and ``call`` runs the very same :mod:`keras_dcp.ops` function;
* :mod:`~keras_dcp.qat.conversion`: :func:`to_tf_keras`, a Keras 3 functional
  model (the zoo's victims) rebuilt in tf_keras with the same weights;
* :mod:`~keras_dcp.qat.quantize`: :func:`quantize_model`, tfmot's QAT
  wrapping (BatchNorm after a conv folded the converter's way; softmax and
  defense stay float, as they are exported), and :func:`is_qat_model`;
* :mod:`~keras_dcp.qat.calibration`: :func:`calibrate_ranges`, every weight
  and activation range set from data before training (tfmot starts them at
  ``[-6, 6]`` and moves activations with an EMA of decay 0.999);
* :mod:`~keras_dcp.qat.train`: :func:`train_qat` (fine-tune, then align) and
  :func:`protect_qat` (append a defense twin);
* :mod:`~keras_dcp.qat.alignment`: :func:`align_biases`, the Keras model's
  folded biases set to the int32 biases of its int8 export, so the two add
  the same biases;
* :mod:`~keras_dcp.qat.selection`: :func:`most_faithful` and
  :func:`mixup_images`, keep among several QAT runs the one whose int8
  export is closest to its Keras model;
* :mod:`~keras_dcp.qat.distill`: :func:`faithful_int8` and :func:`distill_qat`,
  int8 that reproduces the float model the user tested (QAT as distillation
  from it), the path ``export_tflite(..., quantize="int8", training_images=x)`` runs;
* :mod:`~keras_dcp.qat.export`: :func:`convert_qat`, the int8 backbone
  stitched to the float32 defense tail (what
  ``keras_dcp.tflite.export_tflite(..., quantize="int8")`` runs for a
  tf_keras model).

Install with the ``qat`` extra (tf_keras, tensorflow-model-optimization).
"""

from keras_dcp.qat.alignment import align_biases, bias_moves, tflite_biases
from keras_dcp.qat.calibration import calibrate_ranges
from keras_dcp.qat.conversion import to_tf_keras
from keras_dcp.qat.distill import distill_qat, distillation_data, faithful_int8, split_protected_keras
from keras_dcp.qat.export import convert_qat, split_protected
from keras_dcp.qat.quantize import is_qat_model, quantize_model
from keras_dcp.qat.selection import mixup_images, most_faithful
from keras_dcp.qat.train import protect_qat, train_qat
from keras_dcp.qat.twins import twin_class, twin_of

__all__ = [
    "align_biases",
    "bias_moves",
    "calibrate_ranges",
    "convert_qat",
    "distill_qat",
    "distillation_data",
    "faithful_int8",
    "is_qat_model",
    "mixup_images",
    "most_faithful",
    "protect_qat",
    "quantize_model",
    "split_protected_keras",
    "split_protected",
    "tflite_biases",
    "to_tf_keras",
    "train_qat",
    "twin_class",
    "twin_of",
]
