"""MNIST (LeCun, Cortes & Burges): 70,000 handwritten digits, 28 x 28 grayscale, 10 classes."""

from __future__ import annotations

from winit_cli.datasets.registry import DatasetSpec, IdxFile, register

# Payload md5s computed from the official files (/work/shared/data/mnist); archive md5s are the
# published sums that torchvision and TensorFlow check.
MNIST = register(DatasetSpec(
    name="mnist",
    title="MNIST",
    train_images=IdxFile("train-images-idx3-ubyte.gz", "6bbc9ace898e44ae57da46a324031adb",
                         (60000, 28, 28), archive_md5="f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    train_labels=IdxFile("train-labels-idx1-ubyte.gz", "a25bea736e30d166cdddb491f175f624",
                         (60000,), archive_md5="d53e105ee54ea40749a09fcbcd1e9432"),
    test_images=IdxFile("t10k-images-idx3-ubyte.gz", "2646ac647ad5339dbf082846283269ea",
                        (10000, 28, 28), archive_md5="9fb629c4189551a2d022fa330f9573f3"),
    test_labels=IdxFile("t10k-labels-idx1-ubyte.gz", "27ae3e4e09519cfbb04c329615203637",
                        (10000,), archive_md5="ec29112dd5afa0611ce80d1b7f02629c"),
    # yann.lecun.com is the original but often refuses automated downloads: tried last.
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    image_shape=(28, 28),
    classes=10,
    # The training pixels' own mean and std (scaled to [0, 1]): the usual MNIST normalization.
    mean=0.1307,
    std=0.3081,
    cache_folder="mnist",
))
