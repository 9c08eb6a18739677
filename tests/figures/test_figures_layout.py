"""Every chart readable with 1 and with 6 runs, honest and comparable (issue 19), checked on the drawn
objects: plotly figure dicts (legend place and margins, heights, axis types, trace colours and colour
scales) and matplotlib artists (legend and tick label boxes), never on pixels."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import plotly.colors
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex

import workbench.figures as wf
from workbench import cli
from workbench.figures import FIGURES, export, figures_for
from workbench.figures.draw_plotly import FONT_PX, ROW_GAP_PX, _rgb, legend_entries
from workbench.figures.kinds import labelled, skip_reason
from workbench.figures.style import CATEGORY_COLORS, method_colors, text_width

MULTI_RUN_KINDS = (
    "loss",
    "accuracy",
    "grad_lines",
    "grad_heatmap",
    "fidelity_lines",
    "fidelity_heatmap",
    "memory_steps",
    "memory_blocks",
    "memory_phases",
    "time_phases",
    "tradeoff",
    "fidelity_tradeoff",
)


def one(kind: str, runs) -> wf.Figure:
    ((_, fig),) = figures_for(kind, runs)
    return fig


def heatmaps(out) -> list:
    return [t for t in out.data if t.type == "heatmap"]


def plot_px(out) -> float:
    """The height of the plotting area in px (the figure less its top and bottom margins)."""
    return out.layout.height - out.layout.margin.t - out.layout.margin.b


def renderer_boxes(fig, size: str = "one"):
    """The matplotlib figure of `fig` drawn once, with its renderer."""
    out = fig.matplotlib(size)
    canvas = FigureCanvasAgg(out)
    canvas.draw()
    return out, canvas.get_renderer()


def overlapping(boxes) -> list:
    return [(a, b) for a, b in itertools.combinations(boxes, 2) if a.overlaps(b)]


def tick_label_boxes(ax, renderer, axis: str = "x") -> list:
    labels = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    return [t.get_window_extent(renderer) for t in labels if t.get_visible() and t.get_text()]


# 1. heatmap colour scales ------------------------------------------------------------------------------


def test_heatmaps_pin_their_colour_scale_on_every_trace(six_runs, run_of) -> None:
    """The smallest cell is drawn with the scale's low end: colorscale as an explicit list and zmin /
    zmax on every trace (a theme cannot remap them), the data's own extremes where the range is free."""
    figs = [
        one("grad_heatmap", six_runs),
        one("fidelity_heatmap", six_runs),
        wf.saliency_heatmap(run_of("sage").table("saliency")),
        wf.block_grid(run_of("smt").table("blocks")),
        wf.block_grid(run_of("smt").table("blocks"), value="score"),
        wf.row_selection(run_of("spsft").table("rows")),
    ]
    for fig in figs:
        traces = heatmaps(fig.plotly())
        assert traces, fig.kind
        z = np.concatenate([np.asarray(t.z, dtype=float).ravel() for t in traces])
        for t in traces:
            assert t.zauto is False and t.autocolorscale is False and t.coloraxis is None
            assert isinstance(t.colorscale, tuple) and t.colorscale[0][0] == 0 and t.colorscale[-1][0] == 1
            if fig.spec.zmin is None:  # a free range: the data's extremes, shared by every panel
                assert t.zmin == pytest.approx(np.nanmin(z)) and t.zmax == pytest.approx(np.nanmax(z))
            else:
                assert (t.zmin, t.zmax) == (fig.spec.zmin, fig.spec.zmax)
        low = (
            fig.spec.discrete[0]
            if fig.spec.discrete
            else plotly.colors.get_colorscale(fig.spec.colorscale)[0][1]
        )
        assert traces[0].colorscale[0][1] == _rgb(low)  # as rgb(): Streamlit rewrites hex "#0000NN"
    assert figs[0].plotly().data[0].colorscale[0][1] == "rgb(0, 0, 4)"  # Magma's black: the smallest gradient


# 2. legends, heights, spacing ---------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 6])
def test_legends_sit_right_of_the_plots_in_a_margin_made_for_them(six_runs, count) -> None:
    runs = six_runs[:1] if count == 1 else six_runs
    for kind in MULTI_RUN_KINDS:
        for _, fig in figures_for(kind, runs):
            out = fig.plotly()
            lay = out.layout
            domains = [lay[k].domain for k in lay if k.startswith("xaxis")]
            assert all(d[1] <= 1.0 for d in domains), kind
            if not lay.showlegend:
                continue
            assert lay.legend.x > 1 and lay.legend.xanchor == "left", kind  # never over a plot or title
            widest = max(text_width(name, FONT_PX) for name in legend_entries(out))
            assert lay.margin.r >= widest + 30, kind  # the margin holds the widest entry
            assert lay.height >= lay.margin.t + lay.margin.b + len(legend_entries(out)) * 20, kind


def test_gradient_lines_of_six_runs_have_one_legend_entry_per_run(six_runs) -> None:
    """Compare -> Gradients with 5 runs listed 35 entries over a 60 px plot: now a panel per module, a
    line per run, one entry per run, each panel at least 250 px high."""
    single, six = one("grad_lines", six_runs[:1]), one("grad_lines", six_runs)
    out = six.plotly()
    labels = list(labelled(six_runs, "grads")["run"].unique())
    assert sorted(legend_entries(out)) == sorted(labels)
    rows, _ = six.grid("two")
    assert rows == 2 and plot_px(out) >= rows * 250 + ROW_GAP_PX
    assert out.layout.height > single.plotly().layout.height


@pytest.mark.parametrize("kind", ["grad_heatmap", "memory_steps", "memory_phases", "grad_lines"])
def test_heights_grow_with_rows_and_rows_stay_apart(six_runs, kind) -> None:
    """Panel rows are ROW_GAP_PX apart whatever their number, so a panel's title never meets the axis
    title of the panel above; the chart grows with its rows instead of squeezing them."""
    fig = one(kind, six_runs)
    out = fig.plotly()
    rows, cols = fig.grid("two")
    assert rows >= 2
    axes = [out.layout[k] for k in out.layout if k.startswith("yaxis")]
    tops = sorted({round(a.domain[1], 6) for a in axes}, reverse=True)
    bottoms = sorted({round(a.domain[0], 6) for a in axes}, reverse=True)
    for bottom, top in zip(bottoms, tops[1:], strict=False):  # each row's bottom and the next row's top
        assert (bottom - top) * plot_px(out) >= ROW_GAP_PX - 1
    assert out.layout.height >= rows * 220 + (rows - 1) * ROW_GAP_PX


# 3. saliency ----------------------------------------------------------------------------------------------


def test_saliency_heatmap_grows_with_blocks_and_keeps_cells_visible(deep_run, run_of) -> None:
    deep = wf.saliency_heatmap(deep_run("sage").table("saliency"))
    shallow = wf.saliency_heatmap(run_of("sage").table("saliency"))
    out = deep.plotly()
    assert out.layout.height > shallow.plotly().layout.height
    assert plot_px(out) >= 30 * 16  # 30 blocks: at least 16 px a row (was about 5)
    ticks = out.layout.yaxis.tickvals
    assert plot_px(out) / len(ticks) >= FONT_PX + 4  # block labels thinned to fit
    (heat,) = heatmaps(out)
    marks = next(t for t in out.data if t.type == "scatter")
    cell = plot_px(out) / len(heat.y)
    assert marks.marker.symbol == "circle-open" and marks.marker.size <= 0.5 * cell  # the cell shows
    text = heat.text[0][0]
    assert "position: 0" in text and "token: the" in text and "chosen: " in text
    assert "%{text}" in heat.hovertemplate
    paper, renderer = renderer_boxes(deep)
    ax = paper.axes[0]
    mesh = ax.collections[0]
    # no light seams between rows: every cell's edge drawn in its own colour over the neighbour's edge
    assert mesh.get_linewidth()[0] > 0 and np.array_equal(mesh.get_edgecolor(), mesh.get_facecolor())
    borders = ax.collections[1]  # chosen cells: a border inside the cell, never a filled mark
    assert len(borders.get_paths()) == int(deep.data["selected"].sum())
    assert borders.get_facecolor().size == 0 or borders.get_facecolor()[0][3] == 0
    assert not overlapping(tick_label_boxes(ax, renderer, "y"))


@pytest.mark.parametrize(
    "source, method, words",
    [
        ("observed (what SAGE would choose)", "lora", "SAGE would choose"),
        ("method", "sage", "chosen token"),
        ("method", "tokentune", "random"),
        (None, None, "chosen token"),  # not told: the note says what the marks may be
    ],
)
def test_saliency_figures_say_what_the_marks_are(run_of, source, method, words) -> None:
    saliency = run_of("sage").table("saliency")
    heat = wf.saliency_heatmap(saliency, source=source, method=method)
    assert words in heat.spec.mark_label and heat.note
    out = heat.plotly()
    assert words in next(t.name for t in out.data if t.type == "scatter")  # the legend entry
    assert out.layout.title.subtitle.text  # the note is on the chart
    if source and source.startswith("observed"):
        assert "would choose" in heat.title and "trains on every token" in heat.note
        assert "would" in wf.position_selection(saliency, source=source, method=method).title
        assert "would" in wf.token_budget(saliency, source=source, method=method).title
    if source is None:
        assert "SAGE would choose" in heat.note and "random" in heat.note
    if method == "tokentune":
        assert "random" in heat.spec.z_title and "random" in heat.title and "random" in heat.note


def test_saliency_kinds_read_the_runs_saliency_source(run_of) -> None:
    (_, fig) = figures_for("saliency_heatmap", [run_of("sage")])[0]
    assert fig.spec.mark_label == "chosen token" and "sage" in fig.note


# 4. recorded steps as categories -------------------------------------------------------------------------


def sparse_grads(runs: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [
        dict(run=f"r{r}", step=step, layer=layer, module="q_proj", stat="norm", value=rng.lognormal(-3, 0.5))
        for r in range(runs)
        for step in (1, 10, 20, 30)
        for layer in range(4)
    ]
    return pd.DataFrame(rows)


def test_few_recorded_steps_are_categories_in_both_backends(run_of) -> None:
    """Gradients at steps 1, 10, 20, 30: only those four steps on the axis, not a 1-30 number line."""
    steps = ["1", "10", "20", "30"]
    lines = wf.grad_lines(sparse_grads())
    out = lines.plotly()
    assert out.layout.xaxis.type == "category" and list(out.layout.xaxis.categoryarray) == steps
    heat = wf.grad_heatmap(sparse_grads(2))
    hout = heat.plotly()
    assert all(list(t.x) == steps for t in heatmaps(hout))
    assert {hout.layout[k].type for k in hout.layout if k.startswith("xaxis")} == {"category"}
    for fig in (lines, heat):
        paper = fig.matplotlib("one")
        ax = paper.axes[0]
        assert [t.get_text() for t in ax.get_xticklabels()] == steps
    assert list(paper.axes[0].get_xticks()) == [0, 1, 2, 3]  # four columns, side by side
    loss = wf.metric_curves(run_of("lora").table("metrics"), "loss", "train")  # every step: a number line
    assert loss.plotly().layout.xaxis.type != "category"


# 5. stable colours --------------------------------------------------------------------------------------


def test_a_run_has_its_method_colour_in_every_figure(six_runs) -> None:
    """The colour of a run on the loss and time plots is its method's colour on the trade-off plot;
    two runs of one method differ in line style (bars: pattern), never in colour."""
    frame = labelled(six_runs, "metrics")
    method_of = frame.groupby("run")["method"].first()
    tradeoff = {
        t.name: t.marker.color for t in one("tradeoff", six_runs).plotly().data if t.name in method_of.values
    }
    loss = [t for t in one("loss", six_runs).plotly().data if t.name in method_of.index]
    assert len(loss) == 6
    for trace in loss:
        assert trace.line.color == tradeoff[method_of[trace.name]] == method_colors()[method_of[trace.name]]
    lora = [t for t in loss if method_of[t.name] == "lora"]
    assert len({t.line.color for t in lora}) == 1 and len({t.line.dash for t in lora}) == 2
    bars = [t for t in one("time_phases", six_runs).plotly().data if method_of.get(t.name) == "lora"]
    assert len({t.marker.color for t in bars}) == 1 and len({t.marker.pattern.shape for t in bars}) == 2
    paper = one("loss", six_runs).matplotlib("one")
    colours = {to_hex(line.get_color()) for line in paper.axes[0].get_lines() if line.get_xdata().size}
    assert colours <= {c.lower() for c in method_colors().values()}


def test_memory_categories_keep_their_colour_across_figures(run_of) -> None:
    memory = run_of("smt").table("memory")
    steps = {t.name: t.marker.color for t in wf.memory_steps(memory).plotly().data}
    phases = {t.name.split(": ", 1)[1]: t.marker.color for t in wf.memory_phases(memory).plotly().data}
    shared = set(steps) & set(phases)
    assert {"gradients", "saved_activations", "params_frozen"} <= shared
    assert all(steps[c] == phases[c] == CATEGORY_COLORS[c] for c in shared)
    fewer = wf.memory_steps(memory[memory["category"] != "params_frozen"]).plotly().data
    assert all(t.marker.color == CATEGORY_COLORS[t.name] for t in fewer)  # no shift when one is missing


# 6. blocks and rows ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["block_grid", "row_importance", "memory_blocks", "row_selection"])
def test_layer_labels_never_overlap(deep_run, kind) -> None:
    run = deep_run({"block_grid": "smt", "memory_blocks": "lora"}.get(kind, "spsft"))
    fig = one(kind, [run])
    paper, renderer = renderer_boxes(fig)
    for ax in paper.axes:
        if ax.get_label() == "<colorbar>":
            continue
        assert not overlapping(tick_label_boxes(ax, renderer, "x")), kind
        assert not overlapping(tick_label_boxes(ax, renderer, "y")), kind
    out = fig.plotly()
    for name in (k for k in out.layout if k.startswith("xaxis")):
        axis = out.layout[name]
        if axis.tickvals:  # thinned: every label has its width
            room = (axis.domain[1] - axis.domain[0]) * 1000
            assert room / len(axis.tickvals) >= max(
                text_width(v, FONT_PX) for v in axis.ticktext or axis.tickvals
            )


def test_row_importance_has_a_panel_per_projection(deep_run) -> None:
    fig = one("row_importance", [deep_run("spsft")])
    assert fig.spec.facet == "module" and fig.facets() == ["q_proj", "down_proj"]
    out = fig.plotly()
    assert not out.layout.showlegend  # the panel titles name the projections
    assert all(len(t.x) == 30 for t in out.data)  # 30 boxes a panel, not 60 in one strip


# 7. export ---------------------------------------------------------------------------------------------


def test_file_names_hold_the_run_ids_and_one_run_draws_no_tradeoff(synthetic_runs, out_dir) -> None:
    a, b = synthetic_runs[0], synthetic_runs[1]
    for kind in FIGURES.names():
        for stem, _ in figures_for(kind, [a]):
            assert a.id in stem, kind
    for kind in ("tradeoff", "tradeoff_saved", "step_time", "fidelity_tradeoff"):
        assert figures_for(kind, [a]) == [] and "at least 2 (got 1)" in skip_reason(kind, [a])
        ((stem, fig),) = figures_for(kind, [a, b])
        assert a.id in stem and b.id in stem and len(fig.data) == 2
    many = figures_for("loss", synthetic_runs)[0][0]
    assert synthetic_runs[0].id in many and "and-4-more" in many
    written = []
    for run in (a, b):
        ((stem, fig),) = figures_for("loss", [run])
        written += export(fig, out_dir, stem=stem, formats=("csv",))
    assert len({p.name for p in written}) == 2 and all(p.exists() for p in written)


def test_cli_skips_the_tradeoffs_of_one_run_and_says_why(synthetic_runs, tmp_path, capsys) -> None:
    run = synthetic_runs[0]
    args = ["figures", str(run.path), "--kind", "tradeoff,loss", "--out", str(tmp_path), "--format", "csv"]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "tradeoff: skipped, it compares runs: give at least 2 (got 1)" in printed
    assert (tmp_path / f"loss-{run.id}.csv").exists() and not list(tmp_path.glob("tradeoff*"))


@pytest.mark.parametrize("kind", ["memory_blocks", "memory_phases", "loss", "grad_lines", "memory_steps"])
@pytest.mark.parametrize("size", ["one", "two"])
def test_paper_legend_and_panel_titles_stay_inside_the_figure(six_runs, kind, size) -> None:
    """The memory-per-block legend was cut off at the right edge: the legend takes as many columns as
    fit the paper width, long run names in panel titles wrap."""
    paper, renderer = renderer_boxes(one(kind, six_runs), size)
    page = paper.bbox
    (legend,) = paper.legends
    box = legend.get_window_extent(renderer)
    assert box.x0 >= page.x0 - 1 and box.x1 <= page.x1 + 1 and box.y1 <= page.y1 + 1
    for ax in paper.axes:
        title = ax.title.get_window_extent(renderer)
        assert title.x0 >= page.x0 - 1 and title.x1 <= page.x1 + 1, ax.get_title()


def test_memory_per_block_legend_of_long_module_names_fits_one_column(run_of) -> None:
    """Real runs save activations in modules with long names (post_attention_layernorm, embed_tokens):
    the paper legend wraps into rows instead of running off the right edge."""
    memory = run_of("lora").table("memory")
    long = {
        "q_proj": "post_attention_layernorm",
        "k_proj": "input_layernorm",
        "o_proj": "rotary_emb",
        "gate_proj": "embed_tokens",
        "up_proj": "act_fn",
    }
    fig = wf.memory_blocks(memory.assign(module=memory["module"].replace(long)))
    for size in ("one", "two"):
        paper, renderer = renderer_boxes(fig, size)
        (legend,) = paper.legends
        box, page = legend.get_window_extent(renderer), paper.bbox
        assert box.x0 >= page.x0 - 1 and box.x1 <= page.x1 + 1 and box.y1 <= page.y1 + 1
