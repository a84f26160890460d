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

Two mechanisms keep the tail in float. Keras 3 models: the converter only
calibrates, the tail's tensors lose their statistics and are denylisted in
TFLite's MLIR quantizer (as TFLite's selective-quantization debugger does).
tf_keras models (QAT, :mod:`keras_dcp.qat`), whose graphs arrive already
quantized from their fake-quant ops: the model is split at the logits, the
backbone and the float softmax + defense are converted separately and
stitched into one flatbuffer (:func:`_stitch`); a QAT backbone keeps its
trained ranges (no re-calibration).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile

import numpy as np

QUANTIZE_MODES = ("none", "fp16", "dynamic", "int8")
TAILS = ("float", "int8")
IO_TYPES = ("int8", "float")
#: Default number of representative samples used for calibration.
DEFAULT_CALIBRATION_SAMPLES = 500


def _representative_generator(representative, num_samples):
    """A zero-argument generator of ``[x_i]`` batches of one, as the converter wants.

    ``representative`` is an array of model inputs ``(n, ...)`` (float, or
    anything castable to float32; pass exactly what the model takes), or a
    callable returning an iterable of such batches or of lists of arrays.
    """
    if callable(representative):
        def generate():
            for count, item in enumerate(representative()):
                if count >= num_samples:
                    break
                yield [np.asarray(a, "float32") for a in (item if isinstance(item, (list, tuple)) else [item])]
        return generate
    data = np.asarray(representative)
    if data.ndim < 2 or len(data) == 0:
        raise ValueError(
            f"`representative` must be an array of model inputs of shape (n, ...) with n > 0; got shape {data.shape}."
        )

    def generate():
        for i in range(min(len(data), num_samples)):
            yield [data[i:i + 1].astype("float32")]
    return generate


def _is_tf_keras_model(model):
    try:
        import tf_keras
    except ImportError:
        return False
    return isinstance(model, tf_keras.Model)


@contextlib.contextmanager
def _converter_for(model):
    """A ``tf.lite.TFLiteConverter`` for a Keras 3 or tf_keras model (temp dir cleaned after)."""
    import tensorflow as tf

    if _is_tf_keras_model(model):
        yield tf.lite.TFLiteConverter.from_keras_model(model)
        return
    import keras

    if not isinstance(model, keras.Model):
        raise ValueError(f"export_tflite() needs a Keras model; got {type(model).__name__}.")
    with tempfile.TemporaryDirectory(prefix="keras_dcp_export_") as directory:
        # Keras 3 -> SavedModel -> converter: the path TensorFlow documents for
        # Keras 3, and it prints nothing with verbose=False.
        with contextlib.redirect_stdout(io.StringIO()):
            model.export(directory, format="tf_saved_model", verbose=False)
        yield tf.lite.TFLiteConverter.from_saved_model(directory)


def _tail_start(model_t):
    """Index of the first operator of the defense tail in a calibrated model.

    The tail starts at the last SOFTMAX, or at the FULLY_CONNECTED that feeds
    it (the classifier head) when there is one.
    """
    from keras_dcp.tflite.flatbuffer import opcode_name

    subgraph = model_t.subgraphs[0]
    names = [opcode_name(model_t, op) for op in subgraph.operators]
    softmaxes = [i for i, name in enumerate(names) if name == "SOFTMAX"]
    if not softmaxes:
        raise ValueError(
            "tail='float' needs a softmax in the model (the defense tail starts there); "
            "none found. Export with tail='int8'."
        )
    start = softmaxes[-1]
    softmax_input = subgraph.operators[start].inputs[0]
    for i, operator in enumerate(subgraph.operators[:start]):
        if softmax_input in operator.outputs and names[i] == "FULLY_CONNECTED":
            return i
    return start


def _downstream(subgraph, start):
    """Operator indices reachable from operator ``start`` (itself included)."""
    reached = {start}
    produced = set(subgraph.operators[start].outputs)
    for i in range(start + 1, len(subgraph.operators)):
        operator = subgraph.operators[i]
        if produced.intersection(operator.inputs):
            reached.add(i)
            produced.update(operator.outputs)
    return sorted(reached)


def _quantize_with_float_tail(calibrated, io_type):
    """Full-int8 quantization of a calibrated model, leaving the tail in float32."""
    import tensorflow as tf
    from tensorflow.lite.python import convert as tflite_convert

    from keras_dcp.tflite.flatbuffer import load_model, serialize

    model_t = load_model(calibrated)
    subgraph = model_t.subgraphs[0]
    tail = _downstream(subgraph, _tail_start(model_t))
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
        quantized = _quantize_output(modify_model_io_type(quantized, tf.int8, tf.float32))
    return quantized


def _quantize_output(content, scale=1.0 / 255.0, zero_point=-128):
    """Append ``QUANTIZE`` to the float output: ``q = round(y / scale) + zero_point``, int8.

    With the default scale and zero point, ``[0, 1]`` maps onto ``[-128, 127]``
    (probabilities lose at most ``1/510`` each).
    """
    from keras_dcp.tflite.flatbuffer import load_model, schema_module, serialize

    schema = schema_module()
    model_t = load_model(content)
    subgraph = model_t.subgraphs[0]
    (output_index,) = subgraph.outputs
    source = subgraph.tensors[output_index]
    buffer = schema.BufferT()
    model_t.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.shape = list(source.shape)
    tensor.shapeSignature = None if source.shapeSignature is None else list(source.shapeSignature)
    tensor.type = schema.TensorType.INT8
    tensor.buffer = len(model_t.buffers) - 1
    tensor.name = (source.name.decode() if isinstance(source.name, bytes) else source.name) + "/int8"
    tensor.quantization = schema.QuantizationParametersT()
    tensor.quantization.scale = [float(scale)]
    tensor.quantization.zeroPoint = [int(zero_point)]
    subgraph.tensors.append(tensor)
    new_index = len(subgraph.tensors) - 1
    opcode = None
    for i, code in enumerate(model_t.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.QUANTIZE:
            opcode = i
    if opcode is None:
        code = schema.OperatorCodeT()
        code.builtinCode = schema.BuiltinOperator.QUANTIZE
        code.deprecatedBuiltinCode = schema.BuiltinOperator.QUANTIZE
        code.version = 2  # QUANTIZE to int8 is version 2 in TFLite's op versioning
        model_t.operatorCodes.append(code)
        opcode = len(model_t.operatorCodes) - 1
    operator = schema.OperatorT()
    operator.opcodeIndex = opcode
    operator.inputs = [output_index]
    operator.outputs = [new_index]
    subgraph.operators.append(operator)
    subgraph.outputs = [new_index]
    for signature in model_t.signatureDefs or []:
        for item in signature.outputs or []:
            if item.tensorIndex == output_index:
                item.tensorIndex = new_index
    return serialize(model_t)


def _stitch(backbone, tail):
    """One model: ``tail(backbone(x))``, from two single-input/output ``.tflite`` models.

    The tail's tensors, buffers and operators are appended to the backbone's
    main subgraph (indices shifted, operator codes merged) and the tail's
    input tensor is replaced by the backbone's output. Shapes must agree.
    """
    from keras_dcp.tflite.flatbuffer import load_model, serialize

    first, second = load_model(backbone), load_model(tail)
    sub1, sub2 = first.subgraphs[0], second.subgraphs[0]
    (joint,) = sub1.outputs
    (tail_input,) = sub2.inputs
    tensor_offset, buffer_offset = len(sub1.tensors), len(first.buffers)
    first.buffers.extend(second.buffers)
    for tensor in sub2.tensors:
        # Buffer 0 is the shared empty sentinel in both models.
        tensor.buffer = 0 if tensor.buffer == 0 else tensor.buffer + buffer_offset
        sub1.tensors.append(tensor)
    codes = {}
    for i, code in enumerate(second.operatorCodes):
        key = (code.builtinCode, code.deprecatedBuiltinCode, code.customCode, code.version)
        for j, existing in enumerate(first.operatorCodes):
            if (existing.builtinCode, existing.deprecatedBuiltinCode, existing.customCode, existing.version) == key:
                codes[i] = j
                break
        else:
            first.operatorCodes.append(code)
            codes[i] = len(first.operatorCodes) - 1

    def remap(index):
        if index < 0:
            return index
        return joint if index == tail_input else index + tensor_offset

    for operator in sub2.operators:
        operator.opcodeIndex = codes[operator.opcodeIndex]
        operator.inputs = [remap(i) for i in operator.inputs]
        operator.outputs = [remap(i) for i in operator.outputs]
        if operator.intermediates is not None:
            operator.intermediates = [remap(i) for i in operator.intermediates]
        sub1.operators.append(operator)
    new_output = remap(sub2.outputs[0])
    sub1.outputs = [new_output]
    for signature in first.signatureDefs or []:
        for item in signature.outputs or []:
            if item.tensorIndex == joint:
                item.tensorIndex = new_output
    return serialize(first)


def _split_tf_keras(model):
    """``(backbone, tail)`` of a protected tf_keras model: ``x -> logits`` and ``logits -> defense(softmax)``.

    The split is at the logits: a QAT model's int8 logits follow its trained
    ranges (see :func:`keras_dcp.qat.quantize_model`).
    """
    import tf_keras

    defense = model.layers[-1]
    before = model.layers[-2] if len(model.layers) > 1 else None
    softmax = getattr(before, "layer", before)  # tfmot wraps layers in QuantizeWrapper
    if not hasattr(defense, "_keras3_class") or not isinstance(softmax, tf_keras.layers.Softmax):
        raise ValueError(
            "tail='float' for a tf_keras model needs ... -> Softmax -> keras_dcp defense twin "
            "(keras_dcp.qat.protect_qat builds that); export with tail='int8' otherwise."
        )
    backbone = tf_keras.Model(model.inputs, before.input, name=f"{model.name}_backbone")
    logits = tf_keras.Input(shape=tuple(before.input.shape[1:]), name="logits")
    twin = type(defense).from_config(defense.get_config())
    tail = tf_keras.Model(logits, twin(tf_keras.layers.Softmax()(logits)), name=f"{model.name}_tail")
    return backbone, tail


def _is_qat(model):
    """True if a tf_keras model carries tfmot fake-quant wrappers."""
    return any(type(layer).__name__ in ("QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer")
               for layer in model.layers)


#: A bias further than this from its int8 value means align_biases() was not run
#: (after it the two agree to float32 rounding; tests/test_qat.py checks < 1e-6).
_ALIGNED_ATOL = 1e-6


def _warn_if_not_aligned(backbone, content):
    """Warn when a QAT backbone's biases are not those of its int8 export (see keras_dcp.qat_alignment)."""
    import warnings

    from keras_dcp.qat_alignment import bias_moves

    worst = max((change for *_, change in bias_moves(backbone, content)), default=0.0)
    if worst > _ALIGNED_ATOL:
        warnings.warn(
            f"this QAT model's biases differ from its int8 export's by up to {worst:.2g}, so the int8 "
            "model strays further from the Keras one than it needs to; call "
            "keras_dcp.qat.align_biases(model) after training (keras_dcp.qat.train_qat does) and "
            "before exporting or using the Keras model as the reference.",
            UserWarning,
            stacklevel=4,
        )


def _convert_split(model, representative, io_type, num_calibration):
    """int8 backbone (float logits out) stitched to a float32 softmax + defense tail."""
    import tensorflow as tf

    backbone, tail = _split_tf_keras(model)
    with _converter_for(backbone) as converter:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if not _is_qat(backbone):
            converter.representative_dataset = _representative_generator(representative, num_calibration)
        # A QAT backbone is converted from its fake-quant ranges alone:
        # calibrating it again replaces the trained ranges (on ResNet-20 the
        # int8 model then strayed several times further from the Keras one).
        converter.inference_input_type = tf.int8 if io_type == "int8" else tf.float32
        converter.inference_output_type = tf.float32
        backbone_bytes = converter.convert()
    if _is_qat(backbone):
        _warn_if_not_aligned(backbone, backbone_bytes)
    with _converter_for(tail) as converter:
        tail_bytes = converter.convert()
    stitched = _stitch(backbone_bytes, tail_bytes)
    return _quantize_output(stitched) if io_type == "int8" else stitched


def convert(model, quantize="none", representative=None, io_type="int8", tail="float",
            num_calibration=DEFAULT_CALIBRATION_SAMPLES):
    """The ``.tflite`` bytes of ``model``; see :func:`export_tflite` for the arguments."""
    import tensorflow as tf

    if quantize not in QUANTIZE_MODES:
        raise ValueError(f"`quantize` must be one of {', '.join(QUANTIZE_MODES)}; got {quantize!r}.")
    if io_type not in IO_TYPES:
        raise ValueError(f"`io_type` must be one of {', '.join(IO_TYPES)}; got {io_type!r}.")
    if tail not in TAILS:
        raise ValueError(f"`tail` must be one of {', '.join(TAILS)}; got {tail!r}.")
    qat_split = quantize == "int8" and tail == "float" and _is_tf_keras_model(model) and _is_qat(model)
    if quantize == "int8" and representative is None and not qat_split:
        raise ValueError(
            "quantize='int8' (full integer) needs a representative dataset to calibrate "
            "activation ranges: pass representative=<array of a few hundred model inputs> "
            "(CLI: --representative DATA.npz or a dataset name)."
        )
    with _converter_for(model) as converter:
        if quantize == "fp16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "dynamic":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        elif quantize == "int8":
            if tail == "float" and _is_tf_keras_model(model):
                return _convert_split(model, representative, io_type, num_calibration)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = _representative_generator(representative, num_calibration)
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


def export_tflite(model, path=None, quantize="none", representative=None, io_type="int8",
                  tail="float", num_calibration=DEFAULT_CALIBRATION_SAMPLES):
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

    Returns:
        The ``.tflite`` model as bytes.

    Raises:
        ValueError: for an unknown mode, or ``"int8"`` without ``representative``.
    """
    content = convert(model, quantize, representative, io_type, tail, num_calibration)
    if path is not None:
        directory = os.path.dirname(os.fspath(path))
        if directory:
            os.makedirs(directory, exist_ok=True)
        with open(path, "wb") as handle:
            handle.write(content)
    return content
