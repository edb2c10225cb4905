"""records/tables.read_many: many runs' CSV tables read at once give, file by file, what pandas
itself reads from each file alone (values and dtypes), whatever mix of cells the files hold;
a file the fast path cannot decide is read the careful way, with the same reason."""

from __future__ import annotations

import pandas as pd
import pytest

from winit_cli.records.tables import TEXT_COLUMNS, read_many, read_table, to_frame

HEADER = "step,layer,weight_norm,count,empty,name\n"
BODIES = {
    "plain": ["0,1,0.5,3,,fc1", "0,2,1e-05,4,,fc2"],
    "integral floats": ["0,1,0.0,3,,fc1", "10,1,1.0,3,,fc1"],  # float64, not int64
    "integers only": ["0,1,2,3,,fc1", "10,1,5,3,,fc1"],  # weight_norm: int64 in this file alone
    "missing count": ["0,1,0.5,,,fc1", "0,2,0.25,4,,fc2"],  # count: float64
    "infinite": ["0,1,inf,3,-inf,fc1", "0,2,inf,3,,fc2"],
    "plus sign": ["0,1,+5,3,,fc1"],
    "numeric names": ["0,1,0.5,3,,0", "0,2,0.5,3,,2"],  # pandas: names read as numbers first
    "missing key": ["0,,0.5,3,,fc1"],
    "not a number": ["0,1,abc,3,,fc1"],
    "negative norm": ["0,1,-0.5,3,,fc1"],
    "twice": ["0,1,0.5,3,,fc1", "0,1,0.5,3,,fc1"],
}


@pytest.fixture
def files(tmp_path):
    paths = {}
    for name, rows in BODIES.items():
        path = tmp_path / name.replace(" ", "_") / "layers.csv"
        path.parent.mkdir()
        path.write_text(HEADER + "".join(r + "\n" for r in rows))
        paths[name] = path
    return paths


def _pandas(path):
    frame = pd.read_csv(path)
    for column in frame.columns:
        if column in TEXT_COLUMNS:
            frame[column] = frame[column].astype(str)
    return frame


def test_each_file_is_what_pandas_reads_from_it_alone(files):
    got = dict(zip(files, read_many(list(files.values()), ("step", "layer"), ("step", "layer")),
                   strict=True))
    for name in ("plain", "integral floats", "integers only", "missing count", "infinite",
                 "plus sign", "numeric names"):
        table, why = got[name]
        assert why is None, (name, why)
        pd.testing.assert_frame_equal(to_frame(table), _pandas(files[name]), check_exact=True)
    assert str(_pandas(files["integers only"]).weight_norm.dtype) == "int64"
    for name in ("missing key", "not a number", "negative norm", "twice"):
        table, why = got[name]
        assert table is None and why, name
    assert "line 2: layer is empty" in got["missing key"][1]
    assert "weight_norm is 'abc', not a number" in got["not a number"][1]
    assert "weight_norm -0.5 is negative" in got["negative norm"][1]
    assert "a second row for step 0, layer 1" in got["twice"][1]
    # the same reasons as one file read alone
    assert read_table(files["not a number"], ("step", "layer"), ("step", "layer"))[1] \
        == got["not a number"][1]
