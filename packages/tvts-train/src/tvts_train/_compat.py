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
"""

from __future__ import annotations

import logging
import sys

import torch

log = logging.getLogger(__name__)

# The schemas exactly as torchvision's compiled library (torchvision/_C.so) declares them.
_MISSING_SCHEMAS = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

_status: str | None = None


def _op_defined(name: str) -> bool:
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
        for name, schema in _MISSING_SCHEMAS.items():
            if not _op_defined(name):
                torch.library.define(f"torchvision::{name}", schema)
        import torchvision  # noqa: F401,F811

        log.debug("torchvision imported after registering schemas for %s", sorted(_MISSING_SCHEMAS))
        _status = "patched"
        return _status
    _status = "ok"
    return _status
