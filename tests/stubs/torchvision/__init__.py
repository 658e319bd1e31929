"""A stand-in for torchvision, for tests only: PyPI's torchvision does not load beside the CPU torch here.

YOLOv5 and ultralytics use torchvision for NMS, datasets and image transforms; importing `models.yolo` and
building a model touches none of it beyond attribute lookups at import time. Every `torchvision.*`
module resolves to a stub whose attributes are placeholders that fail loudly if actually called.
"""

import importlib.abc
import importlib.machinery
import sys
import types

__version__ = "0.28.0"


class _Placeholder:
    def __init__(self, name):
        self._name = name

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"torchvision stand-in: {self._name} is not available in yolopatch's tests")

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(f"{self._name}.{name}")

    def __mro_entries__(self, bases):
        return (object,)


def _attribute(module_name):
    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(f"{module_name}.{name}")

    return __getattr__


__getattr__ = _attribute("torchvision")


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__getattr__ = _attribute(spec.name)
        return module

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _StubFinder())
