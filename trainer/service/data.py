"""Training data: the bundled Palmer penguins set or a CSV a client sends, validated before
anything is trained (columns, types, ranges, enough rows of each class), and fingerprinted so
that a manifest says exactly which data made its version; and the reference set, the rows the
quality gate scores every version on.

The reference set is a fixed, stratified 30% of the bundled set, never trained on. The gate
cannot use a job's own held-out rows: with corrupted labels, the version published now scores
as badly there as the candidate, and the gate would pass it.
"""

from __future__ import annotations

import hashlib
import io

import pandas as pd
from palmerpenguins import load_penguins
from sklearn.model_selection import train_test_split

from penguins import CATEGORICAL, NUMERIC, SEED, TARGET

# What a measurement may be: wider than any penguin, narrow enough to catch unit mix-ups
# (metres for millimetres, kilograms for grams) and sentinel values such as -1 or 9999.
RANGES = {
    "bill_length_mm": (10.0, 100.0),
    "bill_depth_mm": (5.0, 40.0),
    "flipper_length_mm": (100.0, 300.0),
    "body_mass_g": (1000.0, 10000.0),
}
# The most rows a CSV may hold: a bound on what one job may cost.
MAX_ROWS = 100_000


class DataError(ValueError):
    """Data that cannot be trained on; the message names the problem."""


def _bundled_split() -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = load_penguins()
    train, reference = train_test_split(
        frame, test_size=0.3, random_state=SEED, stratify=frame[TARGET]
    )
    return train.reset_index(drop=True), reference.reset_index(drop=True)


def bundled() -> pd.DataFrame:
    """The Palmer penguins data set the package ships, less the reference rows."""
    return _bundled_split()[0]


def reference() -> pd.DataFrame:
    """The rows the quality gate scores the candidate and the published version on."""
    return _bundled_split()[1]


def parse_csv(text: str) -> pd.DataFrame:
    """A CSV's rows, every value read as text first so that validation sees what was sent."""
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeError) as error:
        raise DataError(f"the CSV cannot be read: {error}") from error
    if len(frame) > MAX_ROWS:
        raise DataError(f"the CSV has {len(frame)} rows, at most {MAX_ROWS} are accepted")
    frame = frame.replace({"": None, "NA": None})
    for name in NUMERIC:
        if name in frame:
            frame[name] = _numbers(frame[name], name)
    return frame


def _numbers(column: pd.Series, name: str) -> pd.Series:
    numbers = pd.to_numeric(column, errors="coerce")
    wrong = column.notna() & numbers.isna()
    if wrong.any():
        row = int(wrong.idxmax())
        raise DataError(
            f"column `{name}` must hold numbers: row {row + 1} has {column[row]!r}"
            f" ({int(wrong.sum())} such rows)"
        )
    return numbers.astype(float)


def validate(frame: pd.DataFrame, min_rows_per_class: int) -> pd.DataFrame:
    """The rows to train on, or a `DataError` naming the first problem: a missing column, a
    value outside its range, a row without a label, fewer than two classes, or a class with
    fewer than `min_rows_per_class` rows."""
    missing = [name for name in NUMERIC + CATEGORICAL + [TARGET] if name not in frame]
    if missing:
        raise DataError(f"missing column(s): {', '.join(f'`{name}`' for name in missing)}")
    for name, (low, high) in RANGES.items():
        outside = frame[name].notna() & ~frame[name].between(low, high)
        if outside.any():
            row = int(outside.idxmax())
            raise DataError(
                f"column `{name}` must lie in [{low:g}, {high:g}]: row {row + 1} has "
                f"{frame[name][row]:g} ({int(outside.sum())} such rows)"
            )
    unlabelled = frame[TARGET].isna()
    if unlabelled.any():
        raise DataError(f"column `{TARGET}` is empty in {int(unlabelled.sum())} rows")
    counts = frame[TARGET].value_counts()
    if len(counts) < 2:
        only = ", ".join(f"`{label}`" for label in counts.index) or "none"
        raise DataError(f"column `{TARGET}` has one class only ({only}): at least two are needed")
    small = counts[counts < min_rows_per_class]
    if len(small):
        named = ", ".join(f"`{label}` ({count} rows)" for label, count in small.items())
        raise DataError(f"too few rows of class {named}: at least {min_rows_per_class} each")
    return frame.reset_index(drop=True)


def fingerprint(frame: pd.DataFrame) -> str:
    """sha256 of the training columns in a canonical CSV form: the same rows give the same
    fingerprint whatever the column order or formatting they arrived in."""
    columns = NUMERIC + CATEGORICAL + [TARGET]
    canonical = frame[columns].to_csv(index=False, float_format="%.17g", lineterminator="\n")
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
