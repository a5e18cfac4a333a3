"""Registration of our classes with ESPnet's stock class choices.

ESPnet keeps the choices of each task in module-level ``ClassChoices`` objects
(``espnet2.tasks.asr.model_choices`` and friends), and stock tools such as
``Speech2Text`` always build models through the stock ``ASRTask``. Adding our classes
to those choices is all it takes for stock tools to load our configs.

Importing ``espnet2.tasks.asr`` costs seconds (it imports every ESPnet ASR module),
so :func:`register_on_import` defers the work until something imports it.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

_TARGET = "espnet2.tasks.asr"


def register() -> None:
    """Add ``model: gmot`` to ``espnet2.tasks.asr.model_choices`` (idempotent)."""
    import espnet2.tasks.asr as stock

    from espnet_otreg.asr.espnet_model import ESPnetGMOTModel

    stock.model_choices.classes.setdefault("gmot", ESPnetGMOTModel)


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Calls :func:`register` right after ``espnet2.tasks.asr`` has been executed."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _TARGET:
            return None
        sys.meta_path.remove(self)  # find the real spec, and fire once
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_register(module):
            exec_module(module)
            register()

        spec.loader.exec_module = exec_and_register
        return spec


def register_on_import() -> None:
    """Register now if ESPnet's ASR task is loaded, else as soon as it is."""
    if _TARGET in sys.modules:
        register()
    elif not any(isinstance(f, _RegisterAfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())
