"""The docstring examples run: every example in the defense math, the layers and the helpers."""

import doctest
import importlib

import pytest

#: Modules whose docstring examples are part of the test command (issue 9: ops and defenses at least).
MODULES = [
    "keras_dcp.ops",
    "keras_dcp.ops.rows",
    "keras_dcp.ops.deception",
    "keras_dcp.ops.truncation",
    "keras_dcp.ops.edgetpu",
    "keras_dcp.ops.mad",
    "keras_dcp.ops.misinformation",
    "keras_dcp.experiments.table",
    "keras_dcp.defenses",
    "keras_dcp.defenses.base",
    "keras_dcp.defenses.deception",
    "keras_dcp.defenses.edgetpu",
    "keras_dcp.defenses.mad",
    "keras_dcp.defenses.misinformation",
    "keras_dcp.defenses.registry",
    "keras_dcp.defenses.reverse_sigmoid",
    "keras_dcp.defenses.rounding",
    "keras_dcp.defenses.spec",
    "keras_dcp.defenses.top_k",
    "keras_dcp.defenses.top_label",
    "keras_dcp.validation",
    "keras_dcp.augment",
    "keras_dcp.inference",
    "keras_dcp.experiments.sweep",
    "keras_dcp.attacks.registry",
    "keras_dcp.attacks.bandit",
    "keras_dcp.attacks.vectorized",
    "keras_dcp.attacks.blackbox",
    "keras_dcp.attacks.disagreement",
    "keras_dcp.attacks.generator",
    "keras_dcp.attacks.gradient_estimation",
    "keras_dcp.data",
    "keras_dcp.benchmarking",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_the_math_modules_have_examples():
    finder = doctest.DocTestFinder()
    for name in ("keras_dcp.ops.deception", "keras_dcp.ops.truncation", "keras_dcp.defenses.deception",
                 "keras_dcp.ops.mad"):
        examples = sum(len(test.examples) for test in finder.find(importlib.import_module(name)))
        assert examples >= 3, name
