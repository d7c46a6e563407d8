"""Every name of the curated top-level API resolves to a callable, also after submodule imports."""
import importlib

import theorylab


def test_every_public_name_resolves():
    importlib.import_module("theorylab.train")  # importing submodules must not shadow an exported name
    importlib.import_module("theorylab.sweep")
    for name in theorylab.__all__:
        assert callable(getattr(theorylab, name)) or name == "__version__", name
    assert theorylab.hessian is importlib.import_module("theorylab.curvature").hessian
