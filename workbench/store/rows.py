"""Caller rows -> validated Arrow data: the one place that checks rows against a table schema.

Two paths, one set of rules (see `schema`):

- row by row (one dict of scalars, or a list of dicts): values are checked in Python and appended to
  per-column lists, so the common "one metric per step" add costs microseconds, not an Arrow round trip;
- columnar (a dict holding arrays / lists / tensors, or a DataFrame): each column becomes one Arrow
  array at once, scalars in the dict broadcast to the column length.

Either way a bad value fails in the `add` that brought it, and a rejected add buffers nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from workbench.store.schema import SchemaError, field_choices, field_fill, table_schema

Rows = Sequence[Mapping[str, Any]] | Mapping[str, Any]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


# ---- per-column rules, parsed once per table ---------------------------------------------------------


def _as_int(v: Any) -> int:
    if isinstance(v, (bool, np.bool_)):
        raise TypeError("got a bool")
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        v = int(v)  # 3.0 is a fine step; 3.5 is not
    if not isinstance(v, (int, np.integer)):
        raise TypeError(f"got {v!r}")
    if not _INT64_MIN <= int(v) <= _INT64_MAX:
        raise OverflowError(f"{v} does not fit in int64")
    return int(v)


def _as_float(v: Any) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number)):
        raise TypeError(f"got {v!r}")
    return float(v)


def _as_str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"got {v!r}")
    return str(v)


def _as_bool(v: Any) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"got {v!r}")
    return bool(v)


def _checker(type_: pa.DataType) -> Callable[[Any], Any]:
    if pa.types.is_integer(type_):
        return _as_int
    if pa.types.is_floating(type_):
        return _as_float
    if pa.types.is_string(type_):
        return _as_str
    if pa.types.is_boolean(type_):
        return _as_bool
    raise NotImplementedError(f"no scalar check for Arrow type {type_}")  # a new type in schema.TABLES


@dataclass(frozen=True)
class _Column:
    field: pa.Field
    fill: Any  # stands in for a missing / null value (None: no fill)
    choices: tuple[str, ...] | None  # allowed strings of a categorical column
    check: Callable[[Any], Any]  # Python scalar -> normalised value, or TypeError


@functools.cache
def _columns_of(table: str) -> tuple[pa.Schema, dict[str, _Column]]:
    schema = table_schema(table)
    return schema, {f.name: _Column(f, field_fill(f), field_choices(f), _checker(f.type)) for f in schema}


def _unknown(table: str, schema: pa.Schema, keys: Any) -> None:
    unknown = [k for k in keys if schema.get_field_index(k) < 0]
    if unknown:
        raise SchemaError(
            f"table {table!r} has no column(s) {', '.join(map(repr, unknown))}; "
            f"columns: {', '.join(schema.names)}"
        )


def _bad_choices(table: str, col: _Column, values: list[Any]) -> SchemaError:
    shown = ", ".join(map(repr, sorted(set(values))))
    return SchemaError(
        f"table {table!r} column {col.field.name!r}: {shown} not in {', '.join(col.choices or ())}"
    )


# ---- row by row --------------------------------------------------------------------------------------


def _unwrap(v: Any) -> Any:
    """numpy / 0-d torch scalars -> Python scalars (both have .item())."""
    return v.item() if hasattr(v, "item") and not isinstance(v, (int, float, str, bool)) else v


def check_row(table: str, row: Mapping[str, Any]) -> list[Any]:
    """One row's values in schema order, checked and normalised; SchemaError on the first problem."""
    if not isinstance(row, Mapping):
        raise SchemaError(f"table {table!r}: rows must be dicts, got {type(row).__name__}")
    schema, columns = _columns_of(table)
    if not row.keys() <= columns.keys():
        _unknown(table, schema, row)
    values = []
    for name, col in columns.items():
        v = _unwrap(row.get(name))
        if v is None:
            if col.fill is not None:
                v = col.fill
            elif not col.field.nullable:
                what = "is missing" if name not in row else "is null"
                raise SchemaError(f"table {table!r}: required column {name!r} {what}")
        else:
            try:
                v = col.check(v)
            except (TypeError, OverflowError) as err:
                raise SchemaError(
                    f"table {table!r} column {name!r} must be {col.field.type}: {err}"
                ) from None
            if col.choices is not None and v not in col.choices:
                raise _bad_choices(table, col, [v])
        values.append(v)
    return values


# ---- columnar ----------------------------------------------------------------------------------------


def _is_column(value: Any) -> bool:
    """True for sequences of values (lists, arrays, tensors), False for one scalar to broadcast."""
    if isinstance(value, (str, bytes)):
        return False
    if hasattr(value, "ndim"):  # numpy array or torch tensor; 0-d counts as a scalar
        return value.ndim > 0
    return isinstance(value, (Sequence, pa.Array, pa.ChunkedArray))


def _convert(field: pa.Field, value: Any) -> pa.Array:
    """A whole column as an Arrow array of the field's type."""
    if hasattr(value, "detach"):  # torch tensor: numpy has no bfloat16, so widen floats first
        value = value.detach().cpu()
        value = (value.double() if value.is_floating_point() else value).numpy()
    if isinstance(value, pa.ChunkedArray):
        value = value.combine_chunks()
    if isinstance(value, pa.Array):
        return value.cast(field.type)
    if pa.types.is_integer(field.type) and not isinstance(value, np.ndarray):
        # pa.array(type=int64) truncates Python floats silently (1.5 -> 1); infer, then cast safely,
        # which refuses truncation, and refuse strings and bools outright
        inferred = pa.array(value)
        kind = inferred.type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)):
            raise TypeError(f"got {kind} values")
        return inferred.cast(field.type)
    return pa.array(value, type=field.type)


def _column_array(table: str, col: _Column, value: Any, n: int) -> pa.Array:
    """One column of a columnar add (scalars broadcast to `n`), filled and checked."""
    field = col.field
    try:
        if value is None:
            arr = pa.nulls(n, type=field.type)
        elif _is_column(value):
            arr = _convert(field, value)
        else:
            arr = pa.repeat(pa.array([col.check(_unwrap(value))], type=field.type)[0], n)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as err:
        raise SchemaError(f"table {table!r} column {field.name!r} must be {field.type}: {err}") from err
    if col.fill is not None and arr.null_count:
        arr = pc.fill_null(arr, pa.scalar(col.fill, type=field.type))
    if not field.nullable and arr.null_count:
        raise SchemaError(
            f"table {table!r}: required column {field.name!r} has {arr.null_count} null value(s)"
        )
    if col.choices is not None:
        ok = pc.is_in(arr, value_set=pa.array(col.choices, pa.string()))
        if not pc.all(pc.or_kleene(ok, pc.is_null(arr))).as_py():
            bad = pc.filter(arr, pc.invert(ok)).drop_null().to_pylist()
            raise _bad_choices(table, col, bad)
    return arr


def to_record_batch(table: str, columns: Mapping[str, Any]) -> pa.RecordBatch:
    """Validate a dict of columns (lists, arrays, tensors; scalars broadcast) as one record batch."""
    schema, spec = _columns_of(table)
    _unknown(table, schema, columns)
    lengths = {k: len(v) for k, v in columns.items() if _is_column(v)}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}={n}" for k, n in lengths.items())
        raise SchemaError(f"table {table!r}: columns have different lengths ({shown})")
    n = next(iter(lengths.values())) if lengths else 1  # all scalars: one row
    arrays = []
    for name, col in spec.items():
        if name not in columns and col.fill is None and not col.field.nullable:
            raise SchemaError(f"table {table!r}: required column {name!r} is missing")
        arrays.append(_column_array(table, col, columns.get(name), n))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


# ---- the buffer --------------------------------------------------------------------------------------


class RowBuffer:
    """The rows of one table waiting for a flush, kept in the order they were added.

    Row-by-row adds accumulate in plain per-column lists; a columnar add first seals those into a
    record batch so the order holds.
    """

    def __init__(self, table: str) -> None:
        self.table = table
        self.schema, _ = _columns_of(table)
        self._lists: list[list[Any]] = [[] for _ in self.schema]
        self._batches: list[pa.RecordBatch] = []
        self.num_rows = 0

    def add(self, rows: Rows) -> int:
        """Check and buffer `rows`; return how many rows were added."""
        if hasattr(rows, "columns") and hasattr(rows, "to_numpy"):  # a pandas DataFrame
            rows = {str(c): rows[c].to_numpy() for c in rows.columns}
        if isinstance(rows, Mapping):
            if any(_is_column(v) for v in rows.values()):
                batch = to_record_batch(self.table, rows)
                self._seal()
                self._batches.append(batch)
                self.num_rows += batch.num_rows
                return batch.num_rows
            rows = [rows]
        if not isinstance(rows, Sequence) or isinstance(rows, (str, bytes)):
            raise SchemaError(
                f"table {self.table!r}: rows must be a list of dicts or a dict of columns, "
                f"got {type(rows).__name__}"
            )
        checked = [check_row(self.table, row) for row in rows]  # all or nothing
        for values in checked:
            for column, v in zip(self._lists, values, strict=True):
                column.append(v)
        self.num_rows += len(checked)
        return len(checked)

    def _seal(self) -> None:
        if self._lists[0]:
            arrays = [
                pa.array(values, type=f.type) for values, f in zip(self._lists, self.schema, strict=True)
            ]
            self._batches.append(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
            self._lists = [[] for _ in self.schema]

    def to_table(self) -> pa.Table:
        """Everything buffered as one contiguous table (the buffer is left as it is)."""
        self._seal()
        return pa.Table.from_batches(self._batches, schema=self.schema).combine_chunks()
