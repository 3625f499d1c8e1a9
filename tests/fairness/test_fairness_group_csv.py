"""load_group_csv: valid tables load, every malformed upload is refused with its module-constant message."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest

from audit.fairness import errors, group_metrics, load_group_csv


def make_csv(n: int = 80, *, small: int = 0) -> bytes:
    rows = ["sample_id,text,label,gender,region"]
    for i in range(n):
        gender = "f" if i % 2 else "m"
        region = "north" if i < small else "south"
        rows.append(f's{i:03d},"text, number {i}",{i % 2},{gender},{region}')
    return ("\n".join(rows) + "\n").encode("utf-8")


def test_valid_csv_loads_with_typed_labels_and_group_frame():
    table = load_group_csv(make_csv(), known_sample_ids={f"s{i:03d}" for i in range(100)})
    assert len(table) == 80
    assert table.ids[:2] == ["s000", "s001"]
    assert table.texts[1] == "text, number 1"
    assert table.labels.dtype == np.int64 and table.labels[:4].tolist() == [0, 1, 0, 1]
    assert table.group_columns == ["gender", "region"]
    assert list(table.groups.columns) == ["gender", "region"]
    assert table.group_sizes()["gender"] == {"m": 40, "f": 40}
    assert table.small_groups == {}
    assert any("20 reference samples have no row" in w for w in table.warnings)
    res = group_metrics(table.labels, table.labels, table.groups[["gender"]])
    assert res.by_group["accuracy"].tolist() == [1.0, 1.0]


def test_paths_file_objects_and_bom_are_accepted(tmp_path):
    data = make_csv()
    path = tmp_path / "groups.csv"
    path.write_bytes(b"\xef\xbb\xbf" + data)
    from_path = load_group_csv(path)
    from_str = load_group_csv(str(path))
    from_file = load_group_csv(io.BytesIO(data))
    assert from_path.ids == from_str.ids == from_file.ids
    assert from_path.group_columns == ["gender", "region"]


def test_optional_columns_and_explicit_group_columns():
    data = b"sample_id,site,batch\na,x,1\nb,y,2\n"
    table = load_group_csv(data, text_column=None, label_column=None, group_columns=["site"], min_group_size=1)
    assert table.texts is None and table.labels is None
    assert table.group_columns == ["site"]
    assert table.to_dict()["group_columns"] == ["site"]


def test_small_groups_are_flagged():
    table = load_group_csv(make_csv(80, small=5), min_group_size=30)
    assert table.small_groups == {"region": ["north"]}
    assert any("region" in w and "north" in w for w in table.warnings)


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        (b"", {}, errors.CSV_EMPTY),
        (b"   \n", {}, errors.CSV_EMPTY),
        (b"sample_id,text,label,gender\n", {}, errors.CSV_EMPTY),
        (b"sample_id,text,gender\na,hi,f\n", {}, errors.CSV_MISSING_COLUMNS),
        (b"sample_id,text,label\na,hi,1\n", {}, errors.CSV_NO_GROUP_COLUMNS),
        (b"sample_id,text,label,gender\na,caf\xe9,1,f\n", {}, errors.CSV_NOT_UTF8),
        (b"sample_id,text,label,gender\na,hi,1,f\n", {"max_bytes": 10}, errors.CSV_TOO_LARGE),
        (b"sample_id,text,label,gender\na,hi,1,f\nzz,ho,0,m\n", {"known_sample_ids": {"a", "b"}}, errors.CSV_UNKNOWN_IDS),
        (b"sample_id,text,label,gender\na,hi,1,f\na,ho,0,m\n", {}, errors.CSV_DUPLICATE_IDS),
        (b"sample_id,text,label,gender\na,hi,1,f\nb,ho,0,\n", {}, errors.CSV_EMPTY_GROUP_VALUE),
        (b"sample_id,text,label,gender\na,hi,1,f\n,ho,0,m\n", {}, errors.CSV_EMPTY_ID),
        (b"sample_id,text,label,gender\na,hi,1,f\nb,ho,,m\n", {}, errors.NAN_LABELS),
        (b'sample_id,text,label,gender\na,"unclosed,1,f\n', {}, errors.CSV_UNPARSABLE),
        (b"sample_id,text,label,gender\na,hi,1,f\n", {"group_columns": ["age"]}, errors.CSV_MISSING_COLUMNS),
    ],
)
def test_malformed_csv_raises_module_constant(data, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        load_group_csv(data, **kwargs)


def test_error_messages_point_at_the_problem():
    with pytest.raises(ValueError) as info:
        load_group_csv(b"sample_id,text,gender\na,hi,f\n")
    assert "label" in str(info.value) and "found: sample_id, text, gender" in str(info.value)
    with pytest.raises(ValueError) as info:
        load_group_csv(b"sample_id,text,label,gender\na,hi,1,f\nb,ho,0,\n")
    assert "'gender'" in str(info.value) and "[3]" in str(info.value)  # file line of the blank cell


def test_oversized_stream_and_path_are_refused_without_parsing(tmp_path):
    big = make_csv(200)
    with pytest.raises(ValueError, match=re.escape(errors.CSV_TOO_LARGE)):
        load_group_csv(io.BytesIO(big), max_bytes=100)
    path = tmp_path / "big.csv"
    path.write_bytes(big)
    with pytest.raises(ValueError, match=re.escape(errors.CSV_TOO_LARGE)):
        load_group_csv(path, max_bytes=100)


def test_text_mode_file_and_other_types_are_refused():
    with pytest.raises(ValueError, match=re.escape(errors.CSV_BAD_INPUT)):
        load_group_csv(io.StringIO("sample_id,label,g\na,1,x\n"))
    with pytest.raises(ValueError, match=re.escape(errors.CSV_BAD_INPUT)):
        load_group_csv(12345)
