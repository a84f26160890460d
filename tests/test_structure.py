"""The package's shape: no import cycles, small modules, no borrowed private names, one registry each.

Read from the source with ``ast`` (nothing is imported for the graph), so the checks hold for
every backend and every optional extra.
"""

import ast
import inspect
import os

import pytest

import keras_dcp

PACKAGE_DIR = os.path.dirname(keras_dcp.__file__)
#: No module of the package may be longer (issue 9).
MAX_MODULE_LINES = 600


def _modules():
    """``{dotted name: path}`` of every module of the package."""
    found = {}
    for folder, _, names in os.walk(PACKAGE_DIR):
        for name in names:
            if not name.endswith(".py"):
                continue
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, os.path.dirname(PACKAGE_DIR))[: -len(".py")]
            dotted = relative.replace(os.sep, ".")
            if dotted.endswith(".__init__"):
                dotted = dotted[: -len(".__init__")]
            found[dotted] = path
    return found


MODULES = _modules()


def _imports(path, module):
    """``[(imported module, imported names)]`` of one file, at any depth (function-level imports too)."""
    tree = ast.parse(open(path).read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.append((base, tuple(alias.name for alias in node.names)))
    return found


def _edges():
    """Module -> the package modules it imports (``from pkg import submodule`` counts as the submodule)."""
    graph = {}
    for module, path in MODULES.items():
        targets = set()
        for base, names in _imports(path, module):
            if not base.startswith("keras_dcp"):
                continue
            submodules = [f"{base}.{name}" for name in names if f"{base}.{name}" in MODULES]
            targets.update(submodules or [base])
        targets.discard(module)
        graph[module] = {t for t in targets if t in MODULES}
    return graph


def _cycles(graph):
    """Every strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return result


def test_no_import_cycle_inside_the_package():
    assert _cycles(_edges()) == []


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_package_parents_are_not_needed_for_a_cycle():
    # a package __init__ that re-exports its submodules is not a cycle with them
    graph = _edges()
    assert "keras_dcp.qat.selection" in graph["keras_dcp.qat"]
    assert "keras_dcp.qat" not in graph["keras_dcp.qat.selection"]


def test_no_module_has_an_invalid_escape_sequence():
    """A docstring with LaTeX (``\\mathrm``) must be raw: Python 3.11 warns (3.12+ louder), a later Python will refuse."""
    import warnings

    offenders = []
    for module, path in sorted(MODULES.items()):
        with open(path) as handle, warnings.catch_warnings():
            warnings.simplefilter("error", SyntaxWarning)  # Python >= 3.12
            warnings.simplefilter("error", DeprecationWarning)  # Python 3.11
            try:
                compile(handle.read(), path, "exec")
            except SyntaxError as error:
                offenders.append(f"{module}: {error.msg}")
    assert offenders == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_600_lines(module):
    with open(MODULES[module]) as handle:
        assert sum(1 for _ in handle) <= MAX_MODULE_LINES


def test_no_module_imports_another_modules_private_names():
    borrowed = []
    for module, path in MODULES.items():
        for base, names in _imports(path, module):
            if base.startswith("keras_dcp"):
                borrowed += [f"{module}: {base}.{name}" for name in names if name.startswith("_")]
    assert borrowed == []


def test_qat_is_a_package_with_its_public_api():
    assert os.path.isdir(os.path.join(PACKAGE_DIR, "qat"))
    assert not os.path.exists(os.path.join(PACKAGE_DIR, "qat_alignment.py"))
    source = open(os.path.join(PACKAGE_DIR, "qat", "__init__.py")).read()
    for name in ("align_biases", "mixup_images", "most_faithful", "protect_qat", "quantize_model", "to_tf_keras",
                 "train_qat", "twin_class", "twin_of"):
        assert f'"{name}"' in source


def test_every_defense_layer_is_registered_with_its_params():
    from keras_dcp.defenses import DEFENSES, OutputDefense

    subclasses, todo = set(), [OutputDefense]
    while todo:
        for sub in todo.pop().__subclasses__():
            subclasses.add(sub)
            todo.append(sub)
    # Concrete defenses (abstract bases such as SecondModelDefense implement no `defend`).
    package_defenses = {cls for cls in subclasses
                        if cls.__module__.startswith("keras_dcp.") and cls.defend is not OutputDefense.defend}
    assert keras_dcp.MAD in package_defenses and keras_dcp.defenses.SecondModelDefense not in package_defenses
    assert package_defenses <= set(DEFENSES.values())
    for name, cls in DEFENSES.items():
        signature = inspect.signature(cls.__init__).parameters
        assert set(cls.params) <= set(signature), name
        layer = keras_dcp.build_defense(name)
        assert set(cls.params) <= set(layer.get_config()), name


def test_every_attack_is_registered_and_declares_what_it_needs():
    from keras_dcp import attacks

    for name, cls in attacks.ATTACKS.items():
        assert issubclass(cls, attacks.Attack) and cls.name == name
        assert isinstance(cls.needs_query_images, bool) and isinstance(cls.label_only, bool)
        assert set(cls.clone_training_arguments) <= {"epochs", "batch_size", "learning_rate"}
    assert attacks.ATTACKS["knockoff-label"].label_only and not attacks.ATTACKS["knockoff"].label_only
    assert not attacks.ATTACKS["maze"].needs_query_images
