"""Property: whatever rows a clinical table holds, reading a cohort ends with a cohort or a DataError that
lists problems, never with another exception."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from smearmil.data import Cohort, DataError, DataOptions, load_cohort

from .conftest import write_image

TRICKY = [
    "0",
    "1",
    "-1",
    "2",
    "1.0",
    "1.7",
    "0.9",
    "inf",
    "-inf",
    "nan",
    "NA",
    "",
    " ",
    "1e400",
    "-0",
    "12/31/1999",
    "31-12-1999",
    "1999-12-31",
    "2/30/2001",
    "M",
    "F",
    "f",
    "x",
    "5,1",
    '"5,1"',
    "3000",
    "-4",
    "\x00",
    "é",
    ";",
    "reactive",
    "tumoral",
    "P1",
    "P2",
    "P 3",
    "[/]",
    "$x$",
    '"',
    "'",
]
cell = st.one_of(
    st.sampled_from(TRICKY),
    st.text(max_size=10),
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
row = st.lists(cell, min_size=0, max_size=7)
header = st.one_of(
    st.just(["ID", "LABEL", "GENDER", "DOB", "LYMPH_COUNT"]),
    st.just(["Patient_ID", "Diagnosis", "Age at Diagnosis", "Gender"]),
    st.lists(st.sampled_from(["ID", "LABEL", "id", "label", "Diagnosis", "age", "DOB", "x", ""]), max_size=6),
)


def _csv(columns: list[str], rows: list[list[str]], delimiter: str) -> bytes:
    quote = lambda v: '"' + v.replace('"', '""') + '"' if any(c in v for c in f'{delimiter}"\n\r') else v  # noqa: E731
    lines = [delimiter.join(quote(v) for v in r) for r in [columns, *rows]]
    return "\n".join(lines).encode("utf-8", errors="surrogatepass")


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image(tmp_path_factory.mktemp("img") / "cell.png", seed=1, size=8, fmt="PNG")


@example(columns=[], rows=[[]], delimiter=",", layout="patient-folders", noise=None)  # found: an empty header
@example(
    columns=["ID", "LABEL", "GENDER", "DOB", "LYMPH_COUNT"],
    rows=[["P1", "1.7", "M", "1/1/1950", "5"]],
    delimiter=",",
    layout="lymphocytosis",
    noise=b"\x00\xff",
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    columns=header,
    rows=st.lists(row, max_size=8),
    delimiter=st.sampled_from([",", ";", "\t"]),
    layout=st.sampled_from(["lymphocytosis", "patient-folders"]),
    noise=st.one_of(st.none(), st.binary(max_size=80)),
)
def test_any_clinical_table_gives_a_cohort_or_a_data_error(
    tmp_path_factory: pytest.TempPathFactory,
    image: Path,
    columns: list[str],
    rows: list[list[str]],
    delimiter: str,
    layout: str,
    noise: bytes | None,
) -> None:
    root = tmp_path_factory.mktemp("fuzz")
    table = root / "trainset" / "trainset_true.csv" if layout == "lymphocytosis" else root / "patients.csv"
    folders = root / "trainset" if layout == "lymphocytosis" else root
    table.parent.mkdir(parents=True, exist_ok=True)
    try:
        content = _csv(columns, rows, delimiter)
    except UnicodeEncodeError:
        content = b"ID,LABEL\n"
    table.write_bytes(content + (noise or b""))
    for pid in ("P1", "P2", "P 3", "0", "1"):
        (folders / pid).mkdir(parents=True, exist_ok=True)
        (folders / pid / "cell.png").write_bytes(image.read_bytes())
    try:
        cohort = load_cohort(root, DataOptions(layout=layout, check_images=False), progress=False)
    except DataError as error:
        assert error.problems, "a DataError lists its problems"
        assert all(p.where and p.message for p in error.problems)
    else:
        assert isinstance(cohort, Cohort) and cohort.patients
