"""``BlackBox``: the metered query interface between a (defended) victim and an attacker.

Every attack in :mod:`keras_dcp.attacks` sees the victim only through
:meth:`BlackBox.query`. The black box counts each answered image, refuses a
batch that would exceed its budget *before* answering it, validates what it is
sent and records what it answered, so the cost of an attack is auditable.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any, Callable

import keras
import numpy as np

from keras_dcp.inference import pad_rows_to_power_of_two
from keras_dcp.validation import check_choice, check_int

_OUTPUT_MODES = ("probabilities", "label")


class BudgetExceededError(RuntimeError):
    """Raised before answering a batch that would take a victim past its query budget."""


@dataclasses.dataclass(frozen=True)
class QueryRecord:
    """One answered call: ``count`` images, ``total`` answered so far including them."""

    call: int
    count: int
    total: int
    tag: str | None = None


class QueryLog:
    """What a :class:`BlackBox` answered: one :class:`QueryRecord` per call.

    With ``record_arrays=True`` on the black box it also keeps every answered
    input batch ``(n, H, W, C)`` and answer ``(n, K)``; :meth:`inputs` and
    :meth:`outputs` concatenate them in query order.
    """

    def __init__(self, keep_arrays=False):
        self.keep_arrays = keep_arrays
        self.records: list[QueryRecord] = []
        self._inputs: list[np.ndarray] = []
        self._outputs: list[np.ndarray] = []

    def append(self, record, x=None, y=None):
        self.records.append(record)
        if self.keep_arrays:
            self._inputs.append(np.array(x, copy=True))
            self._outputs.append(np.array(y, copy=True))

    @property
    def counts(self):
        """Images answered per call, in call order (a list of ints)."""
        return [record.count for record in self.records]

    @property
    def total(self):
        """Images answered over all recorded calls."""
        return sum(self.counts)

    def counts_by_tag(self):
        """``{tag: images}``, e.g. how much of a MAZE budget went to gradient estimation."""
        totals: dict = {}
        for record in self.records:
            totals[record.tag] = totals.get(record.tag, 0) + record.count
        return totals

    def inputs(self):
        """All answered inputs, ``(total, H, W, C)`` (needs ``record_arrays=True``)."""
        return self._concatenate(self._inputs)

    def outputs(self):
        """All answers, ``(total, K)`` (needs ``record_arrays=True``)."""
        return self._concatenate(self._outputs)

    def _concatenate(self, arrays):
        if not self.keep_arrays:
            raise ValueError("This log keeps counts only; create the BlackBox with record_arrays=True.")
        if not arrays:
            return np.zeros((0,), "float32")
        return np.concatenate(arrays, axis=0)

    def __len__(self):
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    def __repr__(self):
        return f"QueryLog(calls={len(self)}, total={self.total})"


def _check_input_range(input_range):
    try:
        low, high = (float(v) for v in input_range)
    except (TypeError, ValueError):
        raise ValueError(f"`input_range` must be a pair (low, high); got {input_range!r}.") from None
    if not low < high:
        raise ValueError(f"`input_range` must have low < high; got {input_range!r}.")
    return low, high


class _KerasTarget:
    """A Keras 3 model; answers with ``predict_on_batch`` (compiled on every backend).

    Each chunk is zero-padded to the next power of two (at least 8 rows), so a
    stream of odd batch sizes compiles a handful of shapes, not one per size.
    """

    def __init__(self, model):
        self.model = model
        shape = tuple(model.input_shape)
        self.input_shape = tuple(shape[1:])
        out = model.output_shape
        self.num_classes = out[-1] if isinstance(out, tuple) and len(out) == 2 else None

    def __call__(self, x):
        n = x.shape[0]
        return keras.ops.convert_to_numpy(self.model.predict_on_batch(pad_rows_to_power_of_two(x, minimum=8)))[:n]


class _SavedModelTarget:
    """A TF SavedModel directory, called through its ``serving_default`` signature."""

    def __init__(self, path):
        import tensorflow as tf  # only this path needs TensorFlow

        self._tf = tf
        self._loaded = tf.saved_model.load(path)
        signatures = self._loaded.signatures
        if "serving_default" in signatures:
            self._fn = signatures["serving_default"]
        elif len(signatures) == 1:
            self._fn = next(iter(signatures.values()))
        else:
            raise ValueError(f"SavedModel {path!r} has no 'serving_default' signature; found {list(signatures)}.")
        specs = self._fn.structured_input_signature[1]
        if len(specs) != 1:
            raise ValueError(f"SavedModel {path!r} must take one input; its signature takes {list(specs)}.")
        self._input_name, spec = next(iter(specs.items()))
        self._input_dtype = spec.dtype
        self.input_shape = tuple(spec.shape[1:])
        outputs = self._fn.structured_outputs
        self._output_name = next(iter(outputs)) if len(outputs) == 1 else None
        if self._output_name is None:
            raise ValueError(f"SavedModel {path!r} must have one output; it has {list(outputs)}.")
        out_shape = outputs[self._output_name].shape
        self.num_classes = out_shape[-1] if len(out_shape) == 2 else None

    def __call__(self, x):
        tensor = self._tf.constant(x, dtype=self._input_dtype)
        return self._fn(**{self._input_name: tensor})[self._output_name].numpy()


class _TFLiteTarget:
    """A ``.tflite`` flatbuffer run with the LiteRT interpreter (float or quantised I/O)."""

    def __init__(self, path):
        from keras_dcp.tflite.interpreter import make_interpreter

        try:
            self._interpreter = make_interpreter(path)
        except (ValueError, RuntimeError, OSError) as error:
            raise ValueError(f"Cannot load the TFLite model {path!r}: {error}") from None
        details = self._interpreter.get_input_details()
        if len(details) != 1:
            raise ValueError(f"The TFLite model {path!r} must take one input; it takes {len(details)}.")
        self.input_shape = tuple(int(d) for d in details[0]["shape"][1:])
        out_shape = self._interpreter.get_output_details()[0]["shape"]
        self.num_classes = int(out_shape[-1]) if len(out_shape) == 2 else None

    def __call__(self, x):
        from keras_dcp.tflite.interpreter import predict

        return predict(None, x, batch_size=len(x), interpreter=self._interpreter)


class _CallableTarget:
    """A Python function ``np.ndarray (n, H, W, C) -> probabilities (n, K)``."""

    def __init__(self, fn):
        self._fn = fn
        self.input_shape = None
        self.num_classes = None

    def __call__(self, x):
        return np.asarray(self._fn(x))


def _resolve_target(target):
    if isinstance(target, BlackBox):
        raise ValueError("`target` is already a BlackBox; pass its model, or use it directly.")
    if isinstance(target, keras.Model):
        return _KerasTarget(target)
    if isinstance(target, (str, os.PathLike)):
        path = os.fspath(target)
        if not os.path.exists(path):
            raise ValueError(f"`target` path {path!r} does not exist.")
        if os.path.isdir(path):
            if not os.path.exists(os.path.join(path, "saved_model.pb")):
                raise ValueError(f"Directory {path!r} is not a SavedModel (no saved_model.pb).")
            return _SavedModelTarget(path)
        if path.endswith(".tflite"):
            return _TFLiteTarget(path)
        if path.endswith(".keras"):
            from keras_dcp.model_io import load_keras_model

            return _KerasTarget(load_keras_model(path, what="victim"))
        if path.endswith(".h5"):
            import keras_dcp.defenses  # noqa: F401  (registers the defense layers for safe_mode loading)

            try:
                return _KerasTarget(keras.saving.load_model(path, compile=False))
            except (OSError, KeyError, TypeError, ValueError) as error:
                raise ValueError(f"Cannot load the victim {path!r}: {error}") from None
        raise ValueError(f"Cannot tell what {path!r} is: expected a .keras, .h5 or .tflite file or a SavedModel dir.")
    if callable(target):
        return _CallableTarget(target)
    raise ValueError(
        "`target` must be a keras.Model, a path (.keras, .tflite, SavedModel dir) or a callable; "
        f"got {type(target).__name__}."
    )


class BlackBox:
    """A victim classifier behind a metered, validated query API.

    ``query(x)`` answers a batch of images ``x`` of shape ``(n, H, W, C)`` with
    a ``(n, K)`` float32 array: the victim's (possibly defended) probabilities,
    or in ``output="label"`` mode the one-hot rows ``y_k = [k = argmax_j p_j]``.
    It counts every answered image in :attr:`queries_used` and refuses, with
    :class:`BudgetExceededError` and *before* computing anything, a batch that
    would take ``queries_used`` past ``budget``. Refused and invalid calls cost
    nothing.

    Example:

    >>> import numpy as np
    >>> from keras_dcp import attacks
    >>> victim = attacks.BlackBox(lambda x: np.full((len(x), 2), 0.5, "float32"), budget=10)
    >>> victim.query(np.zeros((4, 8, 8, 3), "float32")).shape, victim.remaining
    ((4, 2), 6)

    Args:
        target: a ``keras.Model``; a path to a ``.keras`` file, a SavedModel
            directory or a ``.tflite`` file (run with ``ai_edge_litert``); or a
            Python callable ``np.ndarray -> probabilities``.
        budget: most images the victim answers in total (an int), or None for
            no limit.
        output: ``"probabilities"`` or ``"label"`` (one-hot of the top-1 class).
        input_range: ``(low, high)`` every pixel must lie in.
        batch_size: the victim is called on chunks of at most this many images
            (the count is per image, not per chunk).
        record: keep a per-call :class:`QueryLog` in :attr:`log`.
        record_arrays: also keep every answered input and output in the log
            (memory grows with the budget).
        input_shape: ``(H, W, C)`` when the target cannot say (callables).
        num_classes: ``K`` when the target cannot say (callables).

    Raises:
        ValueError: on a bad argument or a target that cannot be loaded.
    """

    def __init__(
        self,
        target: keras.Model | str | os.PathLike | Callable[[np.ndarray], Any],
        budget: int | None = None,
        output: str = "probabilities",
        input_range: tuple[float, float] = (0.0, 1.0),
        batch_size: int = 256,
        record: bool = True,
        record_arrays: bool = False,
        input_shape: tuple[int, ...] | None = None,
        num_classes: int | None = None,
    ):
        check_choice("output", output, _OUTPUT_MODES)
        check_int("batch_size", batch_size, minimum=1)
        self.budget = check_int("budget", budget, minimum=0, allow_none=True)
        self._target = _resolve_target(target)
        self.output = output
        self.input_range = _check_input_range(input_range)
        self.batch_size = int(batch_size)
        self.record = bool(record)
        self.log = QueryLog(keep_arrays=bool(record_arrays)) if record else None
        self.queries_used = 0
        self._calls = 0
        # Reserving rows and counting them is one atomic step: threads sharing a
        # black box can never get more answers than the budget.
        self._lock = threading.Lock()
        self._reserved = 0
        shape = input_shape if input_shape is not None else self._target.input_shape
        self.input_shape = None if shape is None else tuple(None if d is None else int(d) for d in shape)
        classes = num_classes if num_classes is not None else self._target.num_classes
        self.num_classes = None if classes is None else int(classes)

    @property
    def remaining(self) -> int | None:
        """Images still answerable (``budget - queries_used``), or None without a budget."""
        return None if self.budget is None else self.budget - self.queries_used

    def query(self, x: np.ndarray, tag: str | None = None) -> np.ndarray:
        """Answer a batch; counts ``len(x)`` queries.

        Thread-safe: the rows are reserved against the budget under a lock
        before the victim runs, and released if it fails, so concurrent
        callers never get more than ``budget`` answers in total.

        Args:
            x: float array ``(n, H, W, C)`` with every value in ``input_range``
                (float64 is accepted and cast to float32).
            tag: optional label stored in the log (``"train"``,
                ``"gradient-estimate"``...), for auditing where a budget went.

        Returns:
            float32 array ``(n, K)``: probabilities, or one-hot labels in
            ``output="label"`` mode.

        Raises:
            BudgetExceededError: if answering would exceed the budget.
            ValueError: on a wrong shape, dtype or range, or NaN/inf pixels.
        """
        x = self._validate(x)
        n = x.shape[0]
        with self._lock:
            if self.budget is not None and self.queries_used + self._reserved + n > self.budget:
                raise BudgetExceededError(
                    f"Query of {n} images refused: {self.queries_used} of the budget of "
                    f"{self.budget} already used ({self.remaining} left"
                    + (f", {self._reserved} being answered" if self._reserved else "") + ")."
                )
            self._reserved += n
        try:
            y = self._answer(x)
        except BaseException:
            with self._lock:
                self._reserved -= n
            raise
        with self._lock:
            self._reserved -= n
            self.queries_used += n
            self._calls += 1
            if self.log is not None:
                self.log.append(QueryRecord(self._calls, n, self.queries_used, tag), x, y)
        return y

    __call__ = query

    def answer_unmetered(self, x: np.ndarray) -> np.ndarray:
        """The victim's answers to ``x``, validated but neither counted nor logged.

        For the defender's own evaluation (:func:`keras_dcp.attacks.evaluate_clone`
        scores a clone against the defended victim on test images), never for
        an attack: an attack that called it would steal for free.
        """
        return self._answer(self._validate(x))

    def _answer(self, x):
        """The victim's answer to a validated batch, uncounted."""
        n = x.shape[0]
        if n == 0:
            return np.zeros((0, self.num_classes or 0), "float32")
        chunks = [self._call_target(x[start : start + self.batch_size]) for start in range(0, n, self.batch_size)]
        y = np.concatenate(chunks, axis=0)
        if self.output == "label":
            y = np.eye(y.shape[1], dtype="float32")[np.argmax(y, axis=1)]
        return y

    def _call_target(self, x):
        y = np.asarray(self._target(x), dtype="float32")
        if y.ndim != 2 or y.shape[0] != x.shape[0]:
            raise ValueError(
                f"The victim answered {x.shape[0]} images with an array of shape {y.shape}; "
                "expected (n, num_classes)."
            )
        if self.num_classes is None:
            self.num_classes = int(y.shape[1])
        elif y.shape[1] != self.num_classes:
            raise ValueError(f"The victim answered {y.shape[1]} classes; expected {self.num_classes}.")
        return y

    def _validate(self, x):
        if not isinstance(x, np.ndarray):
            if hasattr(x, "__array__") or isinstance(x, (list, tuple)):
                x = np.asarray(x)
            else:
                raise ValueError(f"Queries must be a numpy array; got {type(x).__name__}.")
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(
                f"Queries must be float32 in {self.input_range}; got dtype {x.dtype} "
                "(uint8 images must be scaled first, e.g. x.astype('float32') / 255)."
            )
        x = x.astype("float32", copy=False)
        if self.input_shape is not None:
            expected = (None, *self.input_shape)
            ok = x.ndim == len(expected) and all(e is None or e == d for e, d in zip(expected[1:], x.shape[1:]))
            if not ok:
                hint = " (a single image needs a batch axis: x[None])" if x.ndim == len(self.input_shape) else ""
                raise ValueError(f"Queries must have shape {expected}; got {x.shape}{hint}.")
        elif x.ndim < 2:
            raise ValueError(f"Queries must be a batch (n, ...); got shape {x.shape}.")
        if x.size:
            if not np.isfinite(x).all():
                raise ValueError("Queries contain NaN or inf values.")
            low, high = self.input_range
            x_min, x_max = float(x.min()), float(x.max())
            if x_min < low or x_max > high:
                raise ValueError(f"Query values must lie in [{low}, {high}]; got values in [{x_min}, {x_max}].")
        return x

    def __repr__(self):
        budget = "unlimited" if self.budget is None else self.budget
        return (
            f"BlackBox(output={self.output!r}, queries_used={self.queries_used}, budget={budget}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes})"
        )


def as_black_box(target, **kwargs):
    """``target`` itself if it is a :class:`BlackBox`, else ``BlackBox(target, **kwargs)``."""
    return target if isinstance(target, BlackBox) else BlackBox(target, **kwargs)
