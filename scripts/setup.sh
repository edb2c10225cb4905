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
# The ray extra (tests/integration/test_ray.py runs a real cluster) adds ~300 MB and 10-25 s;
# the tensorboard extra (TensorBoard event files; tests/integration/test_tensorboard.py reads
# them back with it) a few tens of MB. Leave ray out with WINIT_EXTRAS=dev,tensorboard.
# Add 'mutation' (cosmic-ray, for scripts/mutation.py; not needed by the tests) with
# WINIT_EXTRAS=dev,ray,tensorboard,mutation.
say "installing winit and its test tools (pip install -e '.[${WINIT_EXTRAS:-dev,ray,tensorboard}]')"
pip install -e ".[${WINIT_EXTRAS:-dev,ray,tensorboard}]"
# tests/integration/test_report_browser.py looks at report.html in a real browser: Debian's
# Chromium, installed with apt-get where it is missing and we may (root, apt present; ~300 MB, a minute or
# two). Skip this with WINIT_CHROMIUM=0.
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
  say "chromium is installed (the report's browser test uses it)"
elif [ "${WINIT_CHROMIUM:-1}" = 0 ]; then
  say "not installing chromium (WINIT_CHROMIUM=0): tests/integration/test_report_browser.py will fail"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  say "installing Debian's chromium with apt-get, for the report's browser test (a minute or two)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium \
    >/dev/null || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends chromium >/dev/null; }
  say "chromium $(chromium --version 2>/dev/null | awk '{print $2}') installed"
else
  say "chromium is missing and this is not a root shell with apt-get: install it yourself" \
      "(sudo apt-get install chromium) for tests/integration/test_report_browser.py"
fi
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
