"""Writing and reading tables, tensors and side files: round trips, parts, schema rejection."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from workbench.errors import StoreError
from workbench.store import NO_LAYER, TABLES, RunReader, RunWriter, SchemaError, environment_info
from workbench.store.writer import checkout_commit


def test_samples_cover_every_table(samples):
    assert set(samples) == set(TABLES)


@pytest.mark.parametrize("table", list(TABLES))
def test_round_trip_every_table(writer, samples, expected_rows, table):
    writer.add(table, samples[table])
    writer.finish()
    run = RunReader(writer.path)
    assert run.arrow(table).to_pylist() == expected_rows(table)
    df = run.table(table)
    assert list(df.columns) == TABLES[table].names
    assert len(df) == len(expected_rows(table))
    assert run.table_names() == [table]
    if "layer" in df:  # the sentinel keeps layer a plain integer column
        assert df["layer"].dtype == np.int64


@pytest.mark.parametrize("table", list(TABLES))
def test_list_of_dicts_matches_dict_of_columns(writer, expected_rows, table):
    writer.add(table, expected_rows(table))
    writer.finish()
    assert RunReader(writer.path).arrow(table).to_pylist() == expected_rows(table)


def test_unwritten_table_is_empty_with_columns(writer):
    writer.finish()
    df = RunReader(writer.path).table("blocks")
    assert df.empty
    assert list(df.columns) == TABLES["blocks"].names


def test_partial_flushes_append_parts_in_order(writer):
    for step in range(3):
        writer.add("metrics", {"step": step, "name": "loss", "value": 1.0 / (step + 1)})
        writer.flush()
    writer.flush()  # nothing buffered: no empty part
    parts = sorted(p.name for p in (writer.path / "metrics").iterdir())
    assert parts == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    # a reader sees flushed parts while the run is still going
    assert RunReader(writer.path).table("metrics")["step"].tolist() == [0, 1, 2]


def test_parts_are_ordered_by_number_not_name(writer):
    for step in range(12):
        writer.add("timing", {"step": step, "phase": "step", "seconds": 0.1})
        writer.flush()
    # part-00010 sorts after part-00009 either way; check that numbering, not mtime, decides
    assert RunReader(writer.path).table("timing")["step"].tolist() == list(range(12))


def test_inputs_numpy_torch_scalars_and_dataframe(writer):
    writer.add(
        "saliency",
        {
            "step": np.int64(4),  # scalars broadcast to the column length
            "sample": torch.tensor([0, 0, 1]),
            "layer": 2,
            "position": np.arange(3),
            "score": torch.tensor([0.25, 0.5, 0.25], dtype=torch.bfloat16),
            "selected": np.array([True, False, True]),
        },
    )
    writer.add("metrics", pd.DataFrame({"step": [9], "name": ["loss"], "value": [0.5]}))
    writer.add("metrics", {"step": 10, "name": "loss", "value": 0.25})  # all scalars: one row
    writer.finish()
    run = RunReader(writer.path)
    sal = run.table("saliency")
    assert sal["step"].tolist() == [4, 4, 4]
    assert sal["score"].tolist() == [0.25, 0.5, 0.25]
    assert sal["token"].isna().all()
    assert run.table("metrics")["step"].tolist() == [9, 10]


def test_nan_values_stay_nan_not_null(writer):
    writer.add("metrics", {"step": [0], "name": ["loss"], "value": [float("nan")]})
    writer.finish()
    arrow = RunReader(writer.path).arrow("metrics")
    assert arrow.column("value").null_count == 0
    assert math.isnan(arrow.column("value")[0].as_py())


def test_missing_layer_means_whole_model(writer):
    writer.add("memory", {"step": 0, "category": "optimizer", "bytes": 8, "source": "logical"})
    writer.finish()
    assert RunReader(writer.path).table("memory")["layer"].tolist() == [NO_LAYER]


def test_empty_adds_are_ignored(writer):
    writer.add("metrics", [])
    writer.add("metrics", {"step": [], "name": [], "value": []})
    writer.finish()
    assert not (writer.path / "metrics").exists()


@pytest.mark.parametrize(
    ("table", "rows", "match"),
    [
        ("nope", [{"step": 0}], "unknown table 'nope'"),
        ("nope", [], "unknown table 'nope'"),
        ("metrics", {"step": 0, "name": "loss", "value": 1.0, "extra": 3}, "no column.*'extra'"),
        ("metrics", {"step": 0, "value": 1.0}, "required column 'name' is missing"),
        ("metrics", {"step": [0, None], "name": "loss", "value": 1.0}, "'step' has 1 null"),
        ("metrics", {"step": 1.5, "name": "loss", "value": 1.0}, "'step' must be int64"),
        ("metrics", {"step": [0, 1], "name": "loss", "value": [1.0]}, "different lengths"),
        ("metrics", ["not a dict"], "rows must be dicts"),
        ("metrics", "step=0", "rows must be a list of dicts or a dict of columns"),
        (
            "metrics",
            [{"step": 0, "name": "a", "value": 1.0}, {"step": "1", "name": "a", "value": 1.0}],
            "'step'",
        ),
        ("metrics", {"step": [1.5], "name": "loss", "value": 1.0}, "'step' must be int64"),
        ("metrics", {"step": [True], "name": "loss", "value": 1.0}, "'step' must be int64"),
        ("metrics", {"step": [0], "name": [3], "value": 1.0}, "'name' must be string"),
        ("metrics", {"step": 2**63, "name": "loss", "value": 1.0}, "does not fit in int64"),
        ("metrics", {"step": [0], "name": "loss", "value": 1.0, "extra": [1]}, "no column.*'extra'"),
        (
            "memory",
            {"step": [0, 1], "category": "x", "bytes": 1, "source": ["logical", "gpu"]},
            "'gpu' not in",
        ),
        ("memory", {"step": 0, "category": "x", "bytes": 1, "source": "gpu"}, "'gpu' not in logical"),
        (
            "sweep",
            {"method": "lora", "length": 1, "batch_size": 1, "status": "crashed"},
            "'crashed' not in ok",
        ),
    ],
)
def test_schema_rejections(writer, table, rows, match):
    with pytest.raises(SchemaError, match=match):
        writer.add(table, rows)
    assert writer.buffered_rows("metrics") == 0  # a rejected add buffers nothing


def test_schema_error_is_store_and_value_error():
    assert issubclass(SchemaError, StoreError)
    assert issubclass(SchemaError, ValueError)


def test_reader_rejects_unknown_table(writer):
    with pytest.raises(SchemaError, match="unknown table 'metric'"):
        RunReader(writer.path).table("metric")


def test_pandas_metadata_in_a_part_is_ignored(writer):
    # a part carrying pandas metadata (custom index) must not steer how the reader builds its frame
    df = pd.DataFrame({"step": [1], "phase": ["step"], "seconds": [0.5]}, index=pd.Index([7], name="weird"))
    (writer.path / "timing").mkdir()
    pq.write_table(pa.Table.from_pandas(df), writer.path / "timing" / "part-00000.parquet")
    out = RunReader(writer.path).table("timing")
    assert isinstance(out.index, pd.RangeIndex)
    assert list(out.columns) == ["step", "phase", "seconds", "rank"]
    assert RunReader(writer.path).arrow("timing").schema.metadata is None


def test_old_part_without_optional_column_reads_null(writer):
    (writer.path / "memory").mkdir()
    old = pa.table({"step": [0], "layer": [1], "category": ["a"], "bytes": [5], "source": ["device"]})
    pq.write_table(old, writer.path / "memory" / "part-00000.parquet")
    df = RunReader(writer.path).table("memory")
    assert df["phase"].isna().all() and df["module"].isna().all()


def test_tensors_round_trip(writer):
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    tensors = {
        "mask": torch.tensor([[True, False], [False, True]]),
        "scores": torch.randn(2, 3, dtype=torch.bfloat16),
        "view": base[:, 1],  # non-contiguous view of a larger storage
        "alias": base,
        "empty": torch.zeros(0),
    }
    writer.add_tensors("selection", tensors, metadata={"method": "sage"})
    writer.finish()
    run = RunReader(writer.path)
    back = run.tensors("selection")
    assert set(back) == set(tensors)
    for key, tensor in tensors.items():
        assert back[key].dtype == tensor.dtype
        assert torch.equal(back[key], tensor)
    assert run.tensor_names() == ["selection"]
    with pytest.raises(StoreError, match="no tensors 'missing'; available: selection"):
        run.tensors("missing")


def test_json_side_files(writer):
    writer.write_json("selection_info", {"layers": [1, 2], "ratio": np.float32(0.5)})
    with pytest.raises(StoreError, match="reserved"):
        writer.write_json("manifest", {})
    with pytest.raises(StoreError, match="invalid JSON file name"):
        writer.write_json("../escape", {})
    with pytest.raises(StoreError, match="not JSON serialisable"):
        writer.write_json("bad", {"x": object()})
    writer.finish()
    run = RunReader(writer.path)
    assert run.json("selection_info") == {"layers": [1, 2], "ratio": 0.5}
    assert run.json_names() == ["selection_info"]
    with pytest.raises(StoreError, match="no JSON file"):
        run.json("nope")


def test_manifest_fields_and_summary(writer):
    writer.update_summary(best_accuracy=0.75, peak_bytes={"logical": 10})
    writer.update_summary(median_step_s=0.2)
    run = RunReader(writer.path)
    assert run.status == "running"
    assert run.name == "test run"
    assert run.id == writer.id == writer.path.name
    assert run.config == {"lr": 1e-4}
    assert run.environment == {"device": "cpu"}
    assert run.summary == {"best_accuracy": 0.75, "peak_bytes": {"logical": 10}, "median_step_s": 0.2}
    assert run.manifest["created"].endswith("+00:00")
    assert writer.summary == run.summary
    assert (writer.run_id, writer.run_dir, writer.status) == (writer.id, writer.path, "running")
    writer.finish("completed", "done")
    assert run.refresh().status == "completed"
    assert run.status_message == "done"


def test_finished_writer_refuses_more(writer):
    writer.finish()
    with pytest.raises(StoreError, match="already finished"):
        writer.add("metrics", {"step": 0, "name": "loss", "value": 1.0})
    with pytest.raises(StoreError, match="already finished"):
        writer.finish()


def test_finish_rejects_unknown_status(writer):
    with pytest.raises(StoreError, match="final status"):
        writer.finish("running")


def test_large_buffers_flush_themselves(writer, monkeypatch):
    import workbench.store.writer as writer_module

    monkeypatch.setattr(writer_module, "AUTO_FLUSH_ROWS", 4)
    writer.add("timing", {"step": [0, 1, 2], "phase": "step", "seconds": 0.1})
    assert writer.buffered_rows("timing") == 3
    writer.add("timing", {"step": [3, 4], "phase": "step", "seconds": 0.1})
    assert writer.buffered_rows("timing") == 0
    assert RunReader(writer.path).table("timing")["step"].tolist() == [0, 1, 2, 3, 4]


def test_environment_info_and_dataclass_config(runs_dir):
    from dataclasses import dataclass

    @dataclass
    class Cfg:
        lr: float = 1e-4

    env = environment_info("cpu")
    assert env["device"] == "cpu" and env["gpu"] is None
    assert env["torch"] == torch.__version__
    assert {"python", "transformers", "cuda", "platform"} <= set(env)
    assert env["peft"] and env["workbench"]  # versions of what computed the run
    checkout = env["workbench_checkout"]  # the commit when run from a git checkout (as CI does)
    if (Path(__file__).resolve().parents[2] / ".git").exists():
        assert len(checkout["commit"]) == 40 and isinstance(checkout["dirty"], bool)
    assert checkout_commit(runs_dir) is None  # not a checkout
    run = RunWriter.create(runs_dir, name="env", config={"train": Cfg()}, environment=env)
    assert RunReader(run.path).config == {"train": {"lr": 1e-4}}


def test_row_and_columnar_adds_keep_their_order(writer):
    writer.add("timing", {"step": 0, "phase": "a", "seconds": 0.1})
    writer.add("timing", {"step": [1, 2], "phase": "b", "seconds": [0.2, 0.3]})
    writer.add("timing", [{"step": 3, "phase": "c", "seconds": 0.4}])
    writer.add("timing", {"step": np.int64(4), "phase": np.str_("d"), "seconds": np.float32(0.5)})
    writer.add(
        "rows",
        {"step": torch.tensor(5), "layer": 1, "row": 2, "score": torch.tensor(0.5), "selected": np.True_},
    )
    writer.finish()
    run = RunReader(writer.path)
    assert run.table("timing")["step"].tolist() == [0, 1, 2, 3, 4]
    assert run.table("timing")["phase"].tolist() == ["a", "b", "b", "c", "d"]
    assert run.arrow("rows").to_pylist() == [
        {"step": 5, "layer": 1, "module": None, "row": 2, "score": 0.5, "selected": True}
    ]


def test_rank_writers_add_their_rows_with_their_rank_and_nothing_else(writer):
    from workbench.store import RankWriter

    writer.add("memory", {"step": 1, "category": "gradients", "bytes": 8, "source": "logical"})
    writer.flush()
    second = RankWriter(writer.path, rank=1)
    second.add("memory", {"step": 1, "category": "gradients", "bytes": 16, "source": "logical"})
    second.add("metrics", {"step": 1, "name": "loss", "value": 1.0})  # rank 0's table: not kept
    second.update_summary(loss=1.0)
    second.finish()
    writer.add("memory", {"step": 2, "category": "gradients", "bytes": 8, "source": "logical"})
    writer.finish()
    run = RunReader(writer.path)
    memory = run.table("memory").sort_values(["step", "rank"])
    assert memory[["step", "rank", "bytes"]].values.tolist() == [[1, 0, 8], [1, 1, 16], [2, 0, 8]]
    assert run.table("metrics").empty and run.summary == {} and run.status == "completed"
    names = sorted(p.name for p in (writer.path / "memory").iterdir())
    assert names == ["part-00000.parquet", "part-00001.parquet", "part-10000000.parquet"]


def test_old_parts_without_a_rank_column_read_as_rank_0(writer):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (writer.path / "timing").mkdir()
    old = pa.table({"step": [1], "phase": ["forward"], "seconds": [0.5]})
    pq.write_table(old, writer.path / "timing" / "part-00000.parquet")
    writer.finish()
    assert RunReader(writer.path).table("timing")["rank"].tolist() == [0]
