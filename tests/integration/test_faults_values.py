"""Values no honest file holds and inputs built to exhaust winit: a gzip bomb, a sparse 3 GB
table, mathtext in a name, impossible records, a watched loop that never called backward(),
integers of thousands of digits. Each is refused in one line or left out with its reason;
nothing is reported that cannot be true."""

from __future__ import annotations

import gzip
import json
import math
import shutil
import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from winit_cli.cli import app
from winit_cli.datasets import get_dataset
from winit_cli.datasets.idx import read_checked
from winit_cli.errors import DataError

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).parents[1] / "corpus" / "runs"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})


def copy_good(root: Path, name: str, edit=None) -> Path:
    """The corpus's healthy run under `root/name`, its summary.json changed by `edit`."""
    run = root / name
    shutil.copytree(CORPUS / "good", run)
    summary = json.loads((run / "summary.json").read_text())
    summary["run_id"] = summary["name"] = name
    if edit is not None:
        edit(summary)
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_a_gzip_bomb_as_the_training_images_is_refused_without_inflating_it(tmp_path):
    """300 MB of zeros behind a valid IDX header, gzip'd to 0.3 MB: refused in one line once
    past the 47 MB the file holds (the whole 300 MB were inflated, 3 GB for a 14 MB bomb)."""
    spec = get_dataset("mnist")
    expected = spec.train_images
    path = tmp_path / "train-images-idx3-ubyte.gz"
    header = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in expected.shape)
    with gzip.GzipFile(path, "wb", compresslevel=1) as f:
        f.write(header)
        for _ in range(300):
            f.write(bytes(1 << 20))
    payload = 16 + math.prod(expected.shape)
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as err:
            read_checked(path, spec, expected)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "\n" not in str(err.value) and f"more than {payload:,} bytes" in str(err.value)
    assert peak < 2 * payload < 300 << 20


def test_a_sparse_3_gb_layers_csv_is_left_out_unread(tmp_path):
    """`winit report` skips the run with the reason and reports the others; it read 3 GB."""
    root = tmp_path / "runs"
    copy_good(root, "ok")
    big = copy_good(root, "big")
    with open(big / "layers.csv", "r+b") as f:
        f.truncate(3 * 10**9 - 1)
        f.seek(0, 2)
        f.write(b"\n")
    result = invoke("report", str(root))
    assert result.exit_code == 0, result.output
    summary = (root / "report" / "summary.csv").read_text()
    assert "ok" in summary and ",big," not in summary
    assert "3,000,000,000 bytes, more than the 1,073,741,824 allowed" in " ".join(
        result.output.split())


def test_a_name_in_mathtext_is_drawn_as_written(tmp_path):
    """A scheme named `$\\frac{1}{$` (matplotlib's mathtext raised ParseSyntaxException and the
    whole report failed): the report is made and matplotlib draws the name as plain text."""
    from matplotlib.figure import Figure

    from winit_cli.views.plots import save

    root = tmp_path / "runs"
    for name, scheme in (("a", r"$\frac{1}{$"), ("b", "he_normal")):
        run = copy_good(root, name, lambda s, scheme=scheme: s.update(scheme=scheme))
        config = (run / "config.yaml").read_text()
        (run / "config.yaml").write_text(config.replace("scheme: he_normal",
                                                        f"scheme: '{scheme}'"))
    result = invoke("report", str(root))
    assert result.exit_code == 0, result.output
    assert list((root / "report" / "plots").glob("*.png"))

    raw = r"scheme $\frac{1}{$ and $x$, costs \$5"
    fig = Figure()
    ax = fig.subplots()
    ax.set_title(raw)
    ax.plot([1, 2], label=raw)
    ax.legend()
    save(fig, tmp_path / "f.png")
    for text in (ax.title, ax.get_legend().get_texts()[0]):
        # matplotlib's own step from a Text's string to what it draws: no mathtext, the raw name
        assert text._preprocess_math(text.get_text()) == (raw, False)
