"""Import-time compatibility steps for the CPU development environment.

The one step here: make ``import torchvision`` work next to a CPU-only torch.

Why it is needed: PyPI's torchvision wheel is a CUDA build. Next to the CPU build of torch its C++
extension (``torchvision._C``) cannot load, so the ``torchvision::*`` operators are never defined.
``torchvision/_meta_registrations.py`` nevertheless calls ``torch.library.register_fake`` on
``torchvision::nms`` and ``torchvision::qnms`` at import time, and that raises
``RuntimeError: operator torchvision::nms does not exist``. ``timm`` imports torchvision at
``import timm`` and ``transformers`` imports it whenever it is installed, so both break.

The fix: define the two operator *schemas* (no kernels) with ``torch.library.define`` and import
again. The other ops are registered through a helper that checks for the extension first, so these
two are all that is missing. Calling ``torchvision.ops.nms`` would still fail (there is no kernel);
nothing in TVTS uses torchvision's C++ ops. On a machine where torchvision imports normally (a CUDA
machine) this does nothing; where torchvision is not installed it does nothing either.

Every interpreter of the project's venv gets the step, not only code that imports ``tvts_train``
first: ``infra/install.sh`` writes a ``.pth`` start-up line that calls :func:`install_import_hook`.
The hook costs nothing at start-up (this module imports no torch at import time); it acts once, when
something imports torchvision, and only where a CPU torch meets a CUDA torchvision wheel.
"""

from __future__ import annotations

import sys

# No module-level imports beyond sys: this module runs at every start of the venv's interpreter
# (logging, re and typing would add ~30 ms); each function imports what it needs.

# The schemas exactly as torchvision's compiled library (torchvision/_C.so) declares them.
_MISSING_SCHEMAS = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

_status: str | None = None


def _op_defined(name: str) -> bool:
    import torch

    try:
        getattr(torch.ops.torchvision, name)
    except (AttributeError, RuntimeError):  # torch raises AttributeError for an unknown op
        return False
    return True


def _forget_partial_torchvision() -> None:
    """Drop the half-imported torchvision modules a failed import leaves in ``sys.modules``."""
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]


def ensure_torchvision_importable() -> str:
    """Make ``import torchvision`` (and so ``import timm`` / ``transformers``) work; idempotent.

    Returns what happened: ``"ok"`` (imported as is), ``"patched"`` (schemas registered, then
    imported), or ``"absent"`` (torchvision is not installed: nothing to do).
    """
    global _status
    if _status is not None:
        return _status
    try:
        import torchvision  # noqa: F401
    except ModuleNotFoundError:
        _status = "absent"
        return _status
    except RuntimeError as err:
        # Only the known failure is handled; anything else is a real problem and surfaces.
        if "torchvision::" not in str(err) or "does not exist" not in str(err):
            raise
        _forget_partial_torchvision()
        _define_missing_schemas()
        import torchvision  # noqa: F401,F811

        import logging

        logging.getLogger(__name__).debug("torchvision imported after registering schemas for %s", sorted(_MISSING_SCHEMAS))
        _status = "patched"
        return _status
    _status = "ok"
    return _status


def _define_missing_schemas() -> None:
    import torch

    for name, schema in _MISSING_SCHEMAS.items():
        if not _op_defined(name):
            torch.library.define(f"torchvision::{name}", schema)


def _cuda_wheel_next_to_cpu_torch(spec: object) -> bool:
    """Will torchvision's extension fail to load? A ``+cuXXX`` torchvision next to a CUDA-less torch.

    Read from torchvision's ``version.py`` as text: importing torchvision is what fails.
    """
    import re
    from pathlib import Path

    import torch

    origin = getattr(spec, "origin", None)
    if torch.version.cuda is not None or not origin:
        return False
    version = Path(origin).with_name("version.py")
    try:
        text = version.read_text(encoding="utf-8")
    except OSError:
        return False
    found = re.search(r"__version__\s*=\s*['\"]([^'\"]+)['\"]", text)
    return bool(found and "+cu" in found.group(1))


class _TorchvisionFinder:
    """A meta path finder: registers the missing schemas right before torchvision is imported, then
    steps aside. (No ``importlib.abc`` base: importing it costs ~45 ms at every interpreter start.)"""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname != "torchvision":
            return None
        import importlib.machinery

        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TorchvisionFinder)]
        spec = importlib.machinery.PathFinder.find_spec(fullname)
        if spec is not None and _cuda_wheel_next_to_cpu_torch(spec):
            _define_missing_schemas()
            import logging

            logging.getLogger(__name__).debug("registered torchvision schemas %s before its import", sorted(_MISSING_SCHEMAS))
        return None  # the normal finders import it


def install_import_hook() -> None:
    """Make a later ``import torchvision`` work in this interpreter (the venv's ``.pth`` calls this)."""
    if "torchvision" in sys.modules or any(isinstance(f, _TorchvisionFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _TorchvisionFinder())
