"""Where each dataset is looked for, in which order, and why a place is passed over: above all,
a folder holding MNIST is never taken for Fashion-MNIST (they share file names)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
from dataset_folders import isolated_env, seed_folder  # noqa: F401  isolated_env: autouse

from winit_cli.datasets import default_cache_dir, download_dir, find_dir, get_dataset
from winit_cli.datasets import load_dataset as load
from winit_cli.errors import DataError

MNIST = get_dataset("mnist")
FASHION = get_dataset("fashion_mnist")
SMALL = "train-labels-idx1-ubyte.gz"


def test_default_cache_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each dataset has its own cache folder under $XDG_CACHE_HOME/winit (or ~/.cache/winit)."""
    assert default_cache_dir(MNIST) == tmp_path / "xdg-cache" / "winit" / "mnist"
    assert default_cache_dir(FASHION) == tmp_path / "xdg-cache" / "winit" / "fashion-mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # invalid per the XDG spec: ignored
    assert default_cache_dir(MNIST) == Path.home() / ".cache" / "winit" / "mnist"


def test_download_dir_is_the_datasets_own_folder(tmp_path: Path, monkeypatch) -> None:
    """Downloads go to <root>/<cache folder>: never a folder another dataset may share."""
    assert download_dir(FASHION) == default_cache_dir(FASHION)
    monkeypatch.setenv("WINIT_DATA_DIR", str(tmp_path / "data"))
    assert download_dir(FASHION) == tmp_path / "data" / "fashion-mnist"
    assert download_dir(MNIST) == tmp_path / "data" / "mnist"


@pytest.mark.mnist
def test_lookup_order(mnist_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--data-dir, then data.dir, then $WINIT_DATA_DIR/mnist, $WINIT_DATA_DIR, then the cache."""
    data, config, env = (seed_folder(tmp_path / n, mnist_path) for n in ("data", "config", "env"))
    env_sub = seed_folder(env / "mnist", mnist_path)
    cache = seed_folder(default_cache_dir(MNIST), mnist_path)
    monkeypatch.setenv("WINIT_DATA_DIR", str(env))
    assert find_dir(MNIST, data, config) == data
    assert find_dir(MNIST, None, config) == config
    assert find_dir(MNIST) == env_sub
    shutil.rmtree(env_sub)
    assert find_dir(MNIST) == env
    monkeypatch.delenv("WINIT_DATA_DIR")
    assert find_dir(MNIST) == cache
    shutil.rmtree(cache)
    assert find_dir(MNIST) is None


@pytest.mark.mnist
def test_one_data_root_serves_both_datasets(mnist_path: Path, fashion_path: Path,
                                            tmp_path: Path, monkeypatch) -> None:
    """A $WINIT_DATA_DIR holding mnist/ and fashion-mnist/ serves each from its own folder."""
    root = tmp_path / "data"
    seed_folder(root / "mnist", mnist_path)
    seed_folder(root / "fashion-mnist", fashion_path)
    monkeypatch.setenv("WINIT_DATA_DIR", str(root))
    assert find_dir(MNIST) == root / "mnist"
    assert find_dir(FASHION) == root / "fashion-mnist"


@pytest.mark.mnist
def test_mnist_files_are_not_taken_for_fashion(mnist_path: Path, fashion_path: Path,
                                               tmp_path: Path, monkeypatch) -> None:
    """Folders holding MNIST under the shared file names are passed over when Fashion-MNIST is
    asked for, and the next place that really holds it is used."""
    monkeypatch.setenv("WINIT_DATA_DIR", str(mnist_path))  # holds MNIST itself
    cache = seed_folder(default_cache_dir(FASHION), fashion_path)
    assert find_dir(FASHION, mnist_path, mnist_path) == cache
    assert find_dir(MNIST, mnist_path) == mnist_path


@pytest.mark.mnist
def test_nothing_found_says_why_each_place_did_not_qualify(mnist_path: Path, tmp_path: Path,
                                                           monkeypatch) -> None:
    """The error lists every place looked in with its reason, including another dataset's files,
    and says where the files would go."""
    partial = seed_folder(tmp_path / "partial", mnist_path, skip=("t10k-images-idx3-ubyte.gz",))
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("WINIT_DATA_DIR", str(mnist_path))
    with pytest.raises(DataError) as err:
        load("fashion_mnist", partial, missing, download=False)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("Fashion-MNIST not found (")
    assert f"--data-dir {partial} lacks t10k-images-idx3-ubyte.gz" in message
    assert f"the config's data.dir {missing} does not exist" in message
    assert f"$WINIT_DATA_DIR/fashion-mnist {mnist_path / 'fashion-mnist'} does not exist" \
        in message
    assert f"$WINIT_DATA_DIR {mnist_path} holds another dataset's files (MNIST)" in message
    assert f"the cache {default_cache_dir(FASHION)} does not exist" in message
    assert "Downloading was not allowed" in message
    assert f"into {mnist_path / 'fashion-mnist'}" in message  # where a download would go


@pytest.mark.mnist
def test_incomplete_directories_are_skipped(mnist_path: Path, tmp_path: Path) -> None:
    """A folder missing a file is passed over for the next complete one."""
    partial = seed_folder(tmp_path / "partial", mnist_path, skip=("t10k-images-idx3-ubyte.gz",))
    cache = seed_folder(default_cache_dir(MNIST), mnist_path)
    assert find_dir(MNIST, partial, tmp_path / "nowhere") == cache


@pytest.mark.mnist
def test_mixed_gzip_and_plain_directory_counts(mnist_path: Path, tmp_path: Path) -> None:
    """Each file may be gzip'd or plain; a folder mixing both is complete."""
    seed_folder(tmp_path, mnist_path, skip=(SMALL,))
    (tmp_path / SMALL[:-3]).write_bytes(gzip.decompress((mnist_path / SMALL).read_bytes()))
    assert find_dir(MNIST, tmp_path) == tmp_path


@pytest.mark.mnist
def test_corrupted_labels_do_not_hide_a_folder(mnist_path: Path, tmp_path: Path) -> None:
    """A folder whose labels file is unreadable is still chosen, so that loading names the bad
    file instead of silently using (or downloading) another copy."""
    folder = seed_folder(tmp_path / "data", mnist_path, skip=(SMALL,))
    (folder / SMALL).write_bytes(b"\x1f\x8bnot gzip")
    cache = seed_folder(default_cache_dir(MNIST), mnist_path)
    assert cache.is_dir()
    assert find_dir(MNIST, folder) == folder
    with pytest.raises(DataError, match="bad gzip data") as err:
        load("mnist", folder, download=False)
    assert str(folder / SMALL) in str(err.value)


@pytest.mark.mnist
def test_mixed_datasets_in_one_folder_name_the_stranger(mnist_path: Path, fashion_path: Path,
                                                        tmp_path: Path) -> None:
    """Fashion-MNIST labels with MNIST images: the folder is used (its labels are Fashion's) and
    the MNIST file is named as such."""
    name = "t10k-images-idx3-ubyte.gz"
    folder = seed_folder(tmp_path / "mixed", fashion_path, skip=(name,))
    (folder / name).symlink_to(mnist_path / name)
    with pytest.raises(DataError) as err:
        load("fashion_mnist", folder, download=False)
    message = str(err.value)
    assert message.startswith(f"{folder / name} is MNIST's {name}, not Fashion-MNIST's")
    assert "\n" not in message
