"""TFLite export, audit and the Edge TPU formulation of DCP.

>>> from keras_dcp.tflite import export_tflite  # doctest: +SKIP
>>> export_tflite(protected, "model.tflite", quantize="int8", representative=x[:500])  # doctest: +SKIP
"""

from keras_dcp.tflite.audit import EDGETPU_OPS, audit_tflite, format_report
from keras_dcp.tflite.edgetpu import EdgeTPUDeception, logits_tensor, protect_for_edgetpu
from keras_dcp.tflite.export import QUANTIZE_MODES, export_tflite
from keras_dcp.tflite.fidelity import compare_outputs, fidelity
from keras_dcp.tflite.interpreter import make_interpreter, predict

__all__ = [
    "EDGETPU_OPS",
    "EdgeTPUDeception",
    "QUANTIZE_MODES",
    "audit_tflite",
    "compare_outputs",
    "export_tflite",
    "fidelity",
    "format_report",
    "logits_tensor",
    "make_interpreter",
    "predict",
    "protect_for_edgetpu",
]
