#!/usr/bin/env bash
# Set up winit in ./.venv: Python 3.11+, the CPU build of torch and winit.
#
#   bash scripts/setup.sh           winit and torch only: what `winit run` needs
#   bash scripts/setup.sh --tests   also what the test suite needs: pytest and ruff, Ray, the
#                                   TensorBoard reader, MkDocs, Lightning, mup, and Debian's Chromium
#   bash scripts/setup.sh --bench   also what benchmarks/bench_watch.py compares with: Cockpit,
#                                   BackPACK and Lightning (may be given with --tests)
#
# Safe to rerun: an existing .venv is reused and only what is missing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
tests=0
bench=0
for arg in "$@"; do
  case "$arg" in
    --tests) tests=1 ;;
    --bench) bench=1 ;;
    -h|--help) sed -n '2,10p' "$0" | cut -c3-; exit 0 ;;
    *) echo "setup: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done
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
fi
# Extras (pyproject.toml): dev (pytest, ruff), ray (tests/integration/test_ray.py runs a real
# cluster; ~300 MB), tensorboard (tests read event files back; tens of MB), docs (mkdocs and
# Material: CI builds the site; ~120 MB), lightning (the WinitCallback test runs a real Trainer).
# WINIT_EXTRAS overrides the list; add 'mutation' for scripts/mutation.py.
if [ "$tests" = 1 ]; then
  extras=${WINIT_EXTRAS:-dev,ray,tensorboard,docs,lightning}
  say "installing winit and what the tests need (pip install -e '.[$extras]')"
  pip install -e ".[$extras]"
  # The muP cross-check (tests/unit/training/test_mup_crosscheck.py) builds the same MLP with
  # Yang et al.'s own `mup` package; winit never imports it. mup declares torchvision but never
  # imports it, and PyPI's torchvision does not load beside the CPU torch 2.13.0 (a torchvision
  # that fails to load also breaks Lightning's import): so mup comes without its declared
  # dependencies (the ones it imports, numpy, pandas and PyYAML, are winit's own).
  say "installing mup 1.0.0 for the muP cross-check (without torchvision)"
  pip install --no-deps "mup==1.0.0"
else
  say "installing winit (pip install -e .)"
  pip install -e .
fi
# benchmarks/bench_watch.py's comparisons. Cockpit and BackPACK come without their declared
# dependencies (BackPACK's torchvision is never imported and does not load beside the CPU
# torch); the `bench` extra lists what they do import.
if [ "$bench" = 1 ]; then
  say "installing Cockpit, BackPACK and Lightning for benchmarks/bench_watch.py"
  pip install -e ".[bench]"
  pip install --no-deps "cockpit-for-pytorch==1.0.2" "backpack-for-pytorch==1.7.1"
fi
# The report's browser test looks at report.html in a real browser: Debian's Chromium, installed
# with apt-get (as root, ~300 MB, a minute or two) for the tests only. WINIT_CHROMIUM=0 skips it.
if [ "$tests" = 1 ]; then
  if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
    say "chromium is installed (the report's browser test uses it)"
  elif [ "${WINIT_CHROMIUM:-1}" = 0 ]; then
    say "not installing chromium (WINIT_CHROMIUM=0): the browser tests will fail"
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian's chromium with apt-get, system-wide, for the report's browser test"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium \
      >/dev/null || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends chromium >/dev/null; }
    say "chromium $(chromium --version 2>/dev/null | awk '{print $2}') installed"
  else
    say "chromium is missing and this is not a root shell with apt-get: install it yourself" \
        "(sudo apt-get install chromium) for the report's browser test"
  fi
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
build=$(.venv/bin/python -c 'import torch; print(torch.__version__, "CUDA" if torch.version.cuda else "CPU-only")')
say "torch $build; ./.venv is $(du -sh .venv | cut -f1)"
echo "winit is set up in ./.venv. Put it on your PATH with:  source .venv/bin/activate"
echo "(or run .venv/bin/winit directly), then:  winit run configs/quickstart.yaml"
