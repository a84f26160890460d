"""Loading saved Keras models with errors that say what is wrong with the file.

``keras.saving.load_model`` reports a corrupted ``.keras`` file as
``BadZipFile``, one without ``config.json`` as ``KeyError``, truncated weights
as ``OSError``, an unknown layer class as ``TypeError`` and a truncated archive
as "File not found" for a file that exists. :func:`load_keras_model` checks
the file first and turns every such failure into one ``ValueError`` that names
the file and the problem (the CLI prints it in one line and exits with 2).
"""

from __future__ import annotations

import os
import zipfile

import keras


def check_keras_file(path: str | os.PathLike, what: str = "model") -> str:
    """The path of a readable ``.keras`` archive with a ``config.json``; a ValueError otherwise."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"The {what} {path!r} does not exist.")
    if os.path.isdir(path):
        raise ValueError(f"The {what} {path!r} is a directory; expected a .keras file.")
    if not path.endswith(".keras"):
        raise ValueError(f"The {what} {path!r} is not a .keras file (Keras 3's format).")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"The {what} {path!r} is not a valid .keras archive (corrupted or truncated).")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            bad_member = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ValueError(f"The {what} {path!r} is not a valid .keras archive ({error}).") from None
    if "config.json" not in names:
        raise ValueError(f"The {what} {path!r} has no config.json: not a Keras model archive.")
    if bad_member is not None:
        raise ValueError(f"The {what} {path!r} is corrupted (member {bad_member!r} fails its checksum).")
    return path


def load_keras_model(path: str | os.PathLike, what: str = "model", compile: bool = False) -> keras.Model:
    """``keras.saving.load_model(path, safe_mode=True)``, with one clear ValueError for any bad file.

    keras_dcp's layers are registered first, so protected models load.

    Raises:
        ValueError: naming the file and what is wrong with it.
    """
    # The defense layers are registered for safe_mode loading by importing keras_dcp itself
    # (its __init__ imports keras_dcp.defenses), which importing this module already did.
    path = check_keras_file(path, what)
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile, EOFError) as error:
        detail = " ".join(str(error).split())[:300] or type(error).__name__
        raise ValueError(f"Cannot load the {what} {path!r}: {detail}") from None


__all__ = ["check_keras_file", "load_keras_model"]
