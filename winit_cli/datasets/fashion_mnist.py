"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, Zalando): 70,000 photos of clothing, 28 x 28
grayscale, 10 balanced classes, in MNIST's format and file names: a harder drop-in for MNIST.

Copies in the wild are often recompressed (Debian's package is), so their gzip bytes differ from
upstream's; the payload md5s below accept them and a fresh download alike.
"""

from __future__ import annotations

from winit_cli.datasets.registry import DatasetSpec, IdxFile, register

# Payload md5s from /work/shared/data/fashion-mnist/README.md (checked against that copy);
# archive md5s are upstream's published sums, the ones torchvision checks.
FASHION_MNIST = register(DatasetSpec(
    name="fashion_mnist",
    title="Fashion-MNIST",
    train_images=IdxFile("train-images-idx3-ubyte.gz", "f4a8712d7a061bf5bd6d2ca38dc4d50a",
                         (60000, 28, 28), archive_md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    train_labels=IdxFile("train-labels-idx1-ubyte.gz", "9018921c3c673c538a1fc5bad174d6f9",
                         (60000,), archive_md5="25c81989df183df01b3e8a0aad5dffbe"),
    test_images=IdxFile("t10k-images-idx3-ubyte.gz", "8181f5470baa50b63fa0f6fddb340f0a",
                        (10000, 28, 28), archive_md5="bef4ecab320f06d8554ea6380940ec79"),
    test_labels=IdxFile("t10k-labels-idx1-ubyte.gz", "15d484375f8d13e6eb1aabb0c3f46965",
                        (10000,), archive_md5="bb300cfdad3c16e7a12a480ee83cd310"),
    # The dataset's own S3 website bucket (listed in its README; plain HTTP only, the md5s guard
    # the bytes), then the copy in its GitHub repository.
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    image_shape=(28, 28),
    classes=10,
    mean=0.2860,  # of the training pixels scaled to [0, 1]
    std=0.3530,
    cache_folder="fashion-mnist",
))
