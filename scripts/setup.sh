#!/usr/bin/env bash
# Set up winit in ./.venv: Python 3.11+, the CPU build of torch, winit and its test tools.
# Safe to rerun: an existing .venv is reused and only what is missing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
say() { echo "setup: $*"; }
if [ -x .venv/bin/python ]; then
  say "reusing ./.venv"
else
  say "creating ./.venv with $("$python" --version 2>&1)"
  "$python" -m venv .venv
fi
pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
# Pinned first, on its own: an unpinned torch resolves to a multi-GB CUDA build. On Linux,
# PyPI's torch is CUDA-enabled; set TORCH_INDEX=https://download.pytorch.org/whl/cpu to fetch
# the CPU build from PyTorch's own index where that is reachable.
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  say "installing torch 2.13.0${TORCH_INDEX:+ from $TORCH_INDEX} (the big download; a minute or more)"
  pip install ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "torch==2.13.0"
else
  say "torch $(.venv/bin/python -c 'import torch; print(torch.__version__)') is installed"
fi
# The ray extra (tests/test_ray.py runs a real cluster) adds ~300 MB and 10-25 s; the tensorboard
# extra (TensorBoard event files; tests/test_tensorboard.py reads them back with it) a few tens
# of MB. Leave ray out with WINIT_EXTRAS=dev,tensorboard.
# Add 'mutation' (cosmic-ray, for scripts/mutation.py; not needed by the tests) with
# WINIT_EXTRAS=dev,ray,tensorboard,mutation.
say "installing winit and its test tools (pip install -e '.[${WINIT_EXTRAS:-dev,ray,tensorboard}]')"
pip install -e ".[${WINIT_EXTRAS:-dev,ray,tensorboard}]"
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
echo "winit is set up in ./.venv. Put it on your PATH with:  source .venv/bin/activate"
echo "(or run .venv/bin/winit directly), then:  winit run configs/quickstart.yaml"
