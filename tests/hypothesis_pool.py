"""Make Hypothesis draw the same examples whatever ran before.

Hypothesis (>= 6.131) adds to its pool of "interesting" numbers every constant
found in the source of the *local* modules (not site-packages) loaded when a
test draws. keras_dcp is installed in development mode, so its modules are
local: a test that ran earlier and imported, say, ``keras_dcp.models`` changed
what ``tests/test_ops_math.py`` drew (issue 10: the suite failed on a fresh
machine and passed when that file ran alone). Importing every module of the
package before the first draw fixes the pool.
"""

import importlib
import pkgutil

import keras_dcp


def import_every_package_module():
    """Import every module of :mod:`keras_dcp` (optional extras that are missing are skipped)."""
    names = [keras_dcp.__name__]
    names += [
        info.name
        for info in pkgutil.walk_packages(keras_dcp.__path__, prefix="keras_dcp.")
        if not info.name.endswith(".__main__")  # the CLI entry point runs on import
    ]
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    return names
