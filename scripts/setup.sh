#!/usr/bin/env bash
# Set up winit in ./.venv: Python 3.11+, the CPU build of torch, winit and its test tools.
# Safe to rerun: an existing .venv is reused and only what is missing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
# Pinned first, on its own: an unpinned torch resolves to a multi-GB CUDA build. On Linux,
# PyPI's torch is CUDA-enabled; set TORCH_INDEX=https://download.pytorch.org/whl/cpu to fetch
# the CPU build from PyTorch's own index where that is reachable.
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  pip install ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "torch==2.13.0"
fi
# The ray extra (tests/test_ray.py runs a real cluster) adds ~300 MB and 10-25 s; leave it out
# with WINIT_EXTRAS=dev.
pip install -e ".[${WINIT_EXTRAS:-dev,ray}]"
# Machines without internet may hold verified copies of the datasets beside the checkout: use
# them as the cache rather than trying to download. (winit still verifies every file it reads.)
link_shared() {  # link_shared <folder under ../shared/data and the cache> <name for people>
  local shared=../shared/data/$1 cache="${XDG_CACHE_HOME:-$HOME/.cache}/winit/$1"
  if [ -f "$shared/train-images-idx3-ubyte.gz" ] && [ ! -e "$cache" ]; then
    mkdir -p "$(dirname "$cache")"
    ln -s "$(cd "$shared" && pwd)" "$cache"
    echo "$2: using $shared (linked as $cache)"
  fi
}
link_shared mnist MNIST
link_shared fashion-mnist Fashion-MNIST
echo "winit is set up: .venv/bin/winit --help"
