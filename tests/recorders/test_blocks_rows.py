"""Block allocation (SMT) and row importance (SPSFT): complete grids and rows; chosen = what trains."""

from __future__ import annotations

from recorder_helpers import OPTIONS

HIDDEN, KV, MLP, BLOCKS = 64, 32, 128, 4  # tiny-llama: hidden, k/v width, MLP width, blocks
OUT = {"q_proj": HIDDEN, "k_proj": KV, "v_proj": KV, "o_proj": HIDDEN, "gate_proj": MLP, "up_proj": MLP}
OUT["down_proj"] = HIDDEN


def _trained(run, suffix: str) -> dict[tuple[int, str], list]:
    """{(layer, projection): tensor} of the adapter entries `<path>.<suffix>` (what actually trains)."""
    out = {}
    for key, tensor in run.tensors("adapter").items():
        if key.endswith(f".{suffix}"):
            parts = key.split(".")
            out[(int(parts[parts.index("layers") + 1]), parts[-2])] = tensor
    return out


def test_smt_block_grid_once_with_the_trained_blocks_chosen(recorded):
    run = recorded("smt").run
    b = OPTIONS["smt"]["block_size"]
    blocks = run.table("blocks")
    assert set(blocks["step"]) == {0}
    size = blocks.groupby(["layer", "module"]).size()
    assert size.to_dict() == {
        (i, m): OUT[m] * HIDDEN // b**2 for i in range(BLOCKS) for m in ("q_proj", "k_proj", "v_proj")
    }
    chosen = blocks[blocks["selected"]]
    assert len(chosen) == OPTIONS["smt"]["budget_blocks"] == sum(run.summary["blocks_selected"].values())
    trained = {
        (layer, module, int(r), int(c))
        for (layer, module), index in _trained(run, "block_index").items()
        for r, c in index.tolist()
    }
    assert (
        set(zip(chosen["layer"], chosen["module"], chosen["row_block"], chosen["col_block"], strict=True))
        == trained
    )
    assert (blocks["score"] >= 0).all()  # mean_abs scores
    # chosen blocks are the top scores (global top-k)
    assert chosen["score"].min() >= blocks[~blocks["selected"]]["score"].max()
    # Q/K/V shares per layer follow from the table
    shares = chosen.groupby(["layer", "module"]).size() / chosen.groupby("layer").size()
    assert abs(shares.groupby(level="layer").sum() - 1).max() < 1e-12


def test_smt_warmup_gradient_statistics(recorded):
    grads = recorded("smt").run.table("grads").query("phase == 'warmup'")
    assert set(grads["step"]) == {0} and set(grads["stat"]) == {"median", "mean", "max"}
    assert len(grads) == BLOCKS * 3 * 3  # blocks x (q, k, v) x stats
    wide = grads.pivot_table(index=["layer", "module"], columns="stat", values="value")
    assert (
        (wide >= 0).all().all()
        and (wide["max"] >= wide["mean"]).all()
        and (wide["max"] >= wide["median"]).all()
    )


def test_spsft_rows_once_with_the_trained_rows_chosen(recorded):
    run = recorded("spsft").run
    rows = run.table("rows")
    assert set(rows["step"]) == {0}
    assert rows.groupby(["layer", "module"]).size().to_dict() == {
        (i, m): OUT[m] for i in range(BLOCKS) for m in OUT
    }
    chosen = rows[rows["selected"]]
    assert chosen.groupby(["layer", "module"]).size().eq(OPTIONS["spsft"]["rank"]).all()
    trained = {
        (layer, module, int(r))
        for (layer, module), idx in _trained(run, "rows").items()
        for r in idx.tolist()
    }
    assert set(zip(chosen["layer"], chosen["module"], chosen["row"], strict=True)) == trained
    assert (rows["score"] >= 0).all()  # taylor importance
    per_linear = rows.groupby(["layer", "module"])
    assert (
        per_linear.apply(lambda g: g[g["selected"]]["score"].min() >= g[~g["selected"]]["score"].max())
    ).all()


def test_methods_without_such_selections_write_none(recorded):
    run = recorded("lora").run
    assert "blocks" not in run.table_names() and "rows" not in run.table_names()
