"""Make PyPI's torchvision importable beside the CPU build of torch (the `[clip]` extra).

The torchvision wheel that matches torch 2.13 on PyPI (0.28.0) is a CUDA build: its C++ ops
link CUDA libraries that the CPU torch lacks, so they cannot load, and `import torchvision`
then fails at its first op registration ("operator torchvision::nms does not exist"). That
breaks open_clip, which needs only torchvision's pure-Python image transforms, and transformers
too, which imports torchvision whenever it is installed. So the first `import torchvision`
of a process first loads torchvision's own extension, as torchvision does; only when that
cannot load does it declare the two op schemas the import registers against. Their kernels
stay missing: calling `torchvision.ops.nms` raises torchvision's own "Couldn't load custom C++
ops", and nothing here calls it. A working torchvision (a CPU build, or beside a CUDA torch)
loads its extension and is left untouched. Installing the hook imports nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

_libraries: list = []  # a torch Library un-registers its definitions when collected
_done: list[str] = []


class _TorchvisionImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            prepare_torchvision()
        return None  # the ordinary finders import it


def prepare_torchvision() -> str:
    """Once per process, before torchvision imports: -> what was done, in words."""
    if _done:
        return _done[0]
    _done.append("preparing")
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TorchvisionImport)]
    _done[0] = _prepare()
    return _done[0]


def _prepare() -> str:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return "torchvision is not installed"
    import torch

    extension = sorted(Path(next(iter(spec.submodule_search_locations))).glob("_C*.so"))
    try:
        torch.ops.load_library(str(extension[0]))
        return "torchvision's own ops load"
    except (IndexError, OSError):
        library = torch.library.Library("torchvision", "FRAGMENT")
        library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _libraries.append(library)
        return "torchvision's ops are CUDA-only here: their schemas declared, kernels absent"


def install() -> None:
    """Arm the hook (a no-op once torchvision is imported or the hook is armed)."""
    armed = any(isinstance(f, _TorchvisionImport) for f in sys.meta_path)
    if "torchvision" not in sys.modules and not armed and not _done:
        sys.meta_path.insert(0, _TorchvisionImport())
