"""``export_tflite``: a Keras model (protected or not) to a ``.tflite`` file.

Four quantization modes:

* ``"none"``: float32 everywhere;
* ``"fp16"``: float16 weights, float32 compute (dequantized at load);
* ``"dynamic"``: int8 weights, activations quantized on the fly where a
  kernel supports it (dynamic-range quantization);
* ``"int8"``: full integer: int8 weights and activations, calibrated on a
  representative dataset, int8 input and (by default) int8 output.

For ``"int8"`` the defense tail is kept in float32 by default (``tail="float"``):
the classifier head (the last FULLY_CONNECTED feeding the softmax), the
softmax and the defense run in float after a DEQUANTIZE of the head's input,
and the defended probabilities are quantized once at the end (int8 output) or
returned as float. Why: in an int8 graph the softmax output has a step of
1/256, so a probability below 1/512 becomes 0 and the reverse-sigmoid noise of
the small classes, which depends on ``log y``, is computed from the wrong
value; every op of the tail adds its own rounding. The float tail costs a few
microseconds (``K`` x features MACs and about 50 float ops on ``K`` numbers);
see docs/tflite.md for the measured effect on fidelity and latency.
``tail="int8"`` gives the naive fully-int8 graph (what the Edge TPU needs,
with :func:`keras_dcp.tflite.edgetpu.protect_for_edgetpu`).

Two mechanisms keep the tail in float. Keras 3 models (here): the converter
only calibrates, the tail's tensors lose their statistics and are denylisted in
TFLite's MLIR quantizer (as TFLite's selective-quantization debugger does).
tf_keras models (QAT, :mod:`keras_dcp.qat`), whose graphs arrive already
quantized from their fake-quant ops: :func:`keras_dcp.qat.export.convert_qat`
splits them at the logits and stitches the two conversions into one
flatbuffer; a QAT backbone keeps its trained ranges (no re-calibration).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from keras_dcp.tflite.converter import (
    DEFAULT_CALIBRATION_SAMPLES,
    converter_for,
    is_tf_keras_model,
    representative_generator,
)
from keras_dcp.tflite.flatbuffer import downstream, load_model, quantize_output, serialize, tail_start
from keras_dcp.validation import check_choice, check_int

QUANTIZE_MODES = ("none", "fp16", "dynamic", "int8")
TAILS = ("float", "int8")
IO_TYPES = ("int8", "float")


def check_tflite_exportable(model: Any) -> None:
    """A ValueError naming the first defense layer of ``model`` that has no TFLite form (e.g. ``MAD(objective="jacobian")``)."""
    todo = list(getattr(model, "layers", []))
    while todo:
        layer = todo.pop(0)
        if getattr(layer, "tflite_exportable", True) is False:
            raise ValueError(
                f"Layer {layer.name!r} ({type(layer).__name__}) cannot be exported to TFLite: it runs autodiff "
                "per query (objective='jacobian'), and gradient ops are not TFLite builtins. Use "
                "objective='closed_form', which gives the same answers."
            )
        todo.extend(getattr(layer, "layers", []))


def check_representative(model: Any, representative: Any) -> None:
    """A ValueError unless ``representative`` is a non-empty array of ``model``'s input shape."""
    data = np.asarray(representative)
    expected = tuple(model.input_shape[1:]) if hasattr(model, "input_shape") else None
    if data.ndim < 2 or len(data) == 0:
        raise ValueError(
            f"`representative` must be an array of model inputs of shape (n, ...) with n > 0; got shape {data.shape}."
        )
    if expected is not None and None not in expected and tuple(data.shape[1:]) != expected:
        raise ValueError(
            f"`representative` images have shape {tuple(data.shape[1:])}; the model takes {expected}."
        )
    if not np.issubdtype(data.dtype, np.number) or not np.isfinite(data.astype("float64")).all():
        raise ValueError("`representative` must hold finite numbers (no NaN or inf).")


def _quantize_with_float_tail(calibrated, io_type):
    """Full-int8 quantization of a calibrated model, leaving the tail in float32."""
    import tensorflow as tf
    from tensorflow.lite.python import convert as tflite_convert

    model_t = load_model(calibrated)
    subgraph = model_t.subgraphs[0]
    tail = downstream(subgraph, tail_start(model_t))
    denylisted = []
    for index in tail:
        for tensor_index in subgraph.operators[index].outputs:
            tensor = subgraph.tensors[tensor_index]
            denylisted.append(tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name)
            # Without statistics the quantizer leaves a tensor in float; with
            # them it would insert a QUANTIZE/DEQUANTIZE pair (and its
            # rounding) inside the float tail. Statistics on the output
            # would also propagate back through same-scale ops (SELECT_V2)
            # onto the softmax, so the int8 output is added afterwards.
            tensor.quantization = None
    quantized = tflite_convert.mlir_quantize(
        serialize(model_t),
        # Not "fully": the model keeps float32 input and output here and
        # modify_model_io_type (the converter's own step) swaps them below.
        fully_quantize=False,
        denylisted_nodes=denylisted,
    )
    if io_type == "int8":
        from tensorflow.lite.python.util import modify_model_io_type

        # int8 input the converter's way (drops the input QUANTIZE), then an
        # int8 output of our own: the defended probabilities at scale 1/255.
        quantized = quantize_output(modify_model_io_type(quantized, tf.int8, tf.float32))
    return quantized


def convert(
    model: Any,
    quantize: str = "none",
    representative: Any = None,
    io_type: str = "int8",
    tail: str = "float",
    num_calibration: int = DEFAULT_CALIBRATION_SAMPLES,
    batch_size: int | None = None,
) -> bytes:
    """The ``.tflite`` bytes of ``model``; see :func:`export_tflite` for the arguments."""
    import tensorflow as tf

    check_choice("quantize", quantize, QUANTIZE_MODES)
    check_choice("io_type", io_type, IO_TYPES)
    check_choice("tail", tail, TAILS)
    num_calibration = check_int("num_calibration", num_calibration, minimum=1)
    check_tflite_exportable(model)
    batch_size = check_int("batch_size", batch_size, minimum=1, allow_none=True)
    tf_keras_split = quantize == "int8" and tail == "float" and is_tf_keras_model(model)
    if tf_keras_split:
        if batch_size is not None:
            raise ValueError("batch_size is not supported for QAT (tf_keras) models.")
        from keras_dcp.qat.export import convert_qat  # tf_keras and tfmot: the `qat` extra

        return convert_qat(model, representative, io_type, num_calibration)
    if quantize == "int8" and representative is None:
        raise ValueError(
            "quantize='int8' (full integer) needs a representative dataset to calibrate "
            "activation ranges: pass representative=<array of a few hundred model inputs> "
            "(CLI: --representative DATA.npz or a dataset name)."
        )
    if representative is not None and quantize == "int8" and not callable(representative):
        check_representative(model, representative)
    with converter_for(model, batch_size) as converter:
        if quantize == "fp16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "dynamic":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        elif quantize == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative_generator(representative, num_calibration)
            if tail == "float":
                # Calibrate only; the quantization itself is done below so the
                # tail can be left out of it.
                converter.experimental_mlir_quantizer = True
                converter._experimental_calibrate_only = True  # noqa: SLF001 (no public switch)
                return _quantize_with_float_tail(converter.convert(), io_type)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8 if io_type == "int8" else tf.float32
        return converter.convert()


def export_tflite(
    model: Any,
    path: str | os.PathLike | None = None,
    quantize: str = "none",
    representative: Any = None,
    io_type: str = "int8",
    tail: str = "float",
    num_calibration: int = DEFAULT_CALIBRATION_SAMPLES,
    training_images: Any = None,
    batch_size: int | None = None,
) -> bytes:
    """Convert a Keras model to TFLite, quantized or not, and save it.

    Args:
        model: a Keras 3 model (e.g. from :func:`keras_dcp.protect`) or a
            tf_keras model (QAT models from :mod:`keras_dcp.qat`).
        path: where to write the ``.tflite`` file; None only returns the bytes.
        quantize: ``"none"``, ``"fp16"``, ``"dynamic"`` or ``"int8"`` (full
            integer, needs ``representative``).
        representative: for ``"int8"``: an array of model inputs ``(n, ...)``
            exactly as the model takes them (for the zoo models: float images
            in ``[0, 1]``), or a callable returning an iterable of batches.
            The first ``num_calibration`` samples are used. Optional for a
            QAT model with ``tail="float"`` (its ranges come from training).
        io_type: for ``"int8"``: ``"int8"`` (int8 input and output, the
            default) or ``"float"`` (float32 input and output around the int8 graph).
        tail: for ``"int8"``: ``"float"`` (default; head, softmax and defense
            in float32, see the module docstring) or ``"int8"`` (everything
            int8; needed for the Edge TPU).
        num_calibration: number of representative samples used.
        training_images: for ``"int8"`` of a Keras 3 protected model: the
            defender's training images, as the model takes them. Then the int8
            model is trained to reproduce the float protected model itself
            (:func:`keras_dcp.qat.faithful_int8`: QAT as distillation from it,
            ranges calibrated on ``representative`` if given, else on these
            images), so the int8 answers match the float model the user
            tested; needs the ``qat`` extra. ``tail="float"`` only.
        batch_size: a fixed batch size for the input (Keras 3 models), for
            runtimes and benchmark tools that want static shapes; default
            None: a dynamic batch (1 until the interpreter is resized).

    Returns:
        The ``.tflite`` model as bytes.

    Raises:
        ValueError: for an unknown mode, ``"int8"`` without ``representative``,
            or a model with a layer that has no TFLite form (``MAD(objective="jacobian")``).
    """
    if training_images is not None:
        if quantize != "int8" or tail != "float" or is_tf_keras_model(model):
            raise ValueError(
                "`training_images` selects the faithful int8 path: it needs quantize='int8', tail='float' "
                "and a Keras 3 protected model."
            )
        from keras_dcp.qat.distill import faithful_int8  # tf_keras and tfmot: the `qat` extra

        content, _ = faithful_int8(model, training_images, io_type=io_type, calibration=representative, verbose=0)
    else:
        content = convert(model, quantize, representative, io_type, tail, num_calibration, batch_size)
    if path is not None:
        directory = os.path.dirname(os.fspath(path))
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(content)
    return content
