import importlib
import pkgutil

import baton


def test_public_names_are_exported_and_exist():
    assert sorted(baton.__all__) == sorted(
        [
            "BatonError",
            "ModelSettings",
            "Runtime",
            "ServerSettings",
            "Signature",
            "TensorSpec",
            "VersionState",
            "__version__",
        ]
    )
    for name in baton.__all__:
        assert hasattr(baton, name), name


def test_every_module_declares_all_that_resolves():
    for info in pkgutil.walk_packages(baton.__path__, "baton."):
        module = importlib.import_module(info.name)
        exported = getattr(module, "__all__", None)
        assert exported is not None, f"{info.name} has no __all__"
        for name in exported:
            assert hasattr(module, name), f"{info.name}.__all__ names missing {name}"
