#!/usr/bin/env bash
# One-command setup: system tools, then a .venv with both packages editable.
# On a CPU machine torch is pinned to TORCH_VERSION first and every later pip call is constrained to it
# (an unconstrained resolver pulls several GB of CUDA wheels). On a machine whose python already has a
# CUDA torch, the venv sees the system site-packages and pins that torch instead.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

need_apt=()
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || need_apt+=(ffmpeg)
command -v espeak-ng >/dev/null || need_apt+=(espeak-ng)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "install: apt-get install ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

system_torch=$("$PYTHON" - <<'PY' 2>/dev/null || true
import torch
print(torch.__version__ if torch.cuda.is_available() else "")
PY
)
if [ ! -x "$VENV/bin/python" ]; then
  if [ -n "$system_torch" ]; then
    echo "install: CUDA torch $system_torch found; the venv reuses it"
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
"${PIP[@]}" --upgrade pip setuptools wheel
if [ -n "$system_torch" ]; then
  echo "torch==${system_torch%%+*}" > "$VENV/constraints.txt"
else
  echo "torch==$TORCH_VERSION" > "$VENV/constraints.txt"
  "${PIP[@]}" "torch==$TORCH_VERSION"
fi
export PIP_CONSTRAINT="$PWD/$VENV/constraints.txt"
# deepspeed builds from source; no CUDA ops are compiled ahead of time.
export DS_BUILD_OPS=0
"${PIP[@]}" -e "packages/tvts-data[dev]" -e "packages/tvts-train[dev]"
# Every interpreter of the venv can import timm and transformers, even where a CUDA torchvision wheel
# sits next to the CPU torch (tvts_train/_compat.py): a start-up line that installs a lazy import hook.
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cat > "$SITE/tvts_torchvision_hook.pth" <<'PTH'
import sys; exec("try:\n from tvts_train._compat import install_import_hook\nexcept ImportError:\n pass\nelse:\n install_import_hook()")
PTH
echo "install: done ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
