"""`workbench figures`: every figure kind the app shows, in every format, from real tiny runs."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from workbench import cli
from workbench.api import figures_for, open_runs
from workbench.figures import FIGURES
from workbench.figures.style import DPI

FORMATS = ("pdf", "svg", "png", "html")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def source_for(kind: str, runs_dir: Path) -> tuple[str, list]:
    """What to point the command at: one run that recorded the kind's tables (per-run kinds), else
    the runs dir (the trade-off kinds compare runs: one run draws none)."""
    everything = open_runs(runs_dir)
    if not FIGURES.get(kind).per_run:
        assert figures_for(kind, everything), f"the fixture has no runs for {kind}"
        return str(runs_dir), everything
    runs = [r for r in everything if figures_for(kind, [r])]
    assert runs, f"the fixture has no run for {kind}"
    return str(runs[0].path), runs[:1]


@pytest.mark.parametrize("kind", list(FIGURES))
def test_every_kind_in_every_format(kind, smoke_study, tmp_path, capsys):
    source, runs = source_for(kind, smoke_study)
    out = tmp_path / "figs"
    code = cli.main(["figures", source, "--kind", kind, "--out", str(out), "--format", ",".join(FORMATS)])
    assert code == 0, capsys.readouterr()
    ((stem, fig),) = figures_for(kind, runs)
    for fmt in FORMATS:
        assert (out / f"{stem}.{fmt}").stat().st_size > 0
    pdf = (out / f"{stem}.pdf").read_bytes()
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf  # TrueType text (fonttype 42), no glyph paths
    assert "<text" in (out / f"{stem}.svg").read_text()  # text stays text
    width, height = fig.size_inches("one")
    assert png_size(out / f"{stem}.png") == (round(width * DPI), round(height * DPI))
    assert "plotly" in (out / f"{stem}.html").read_text()[:200_000].lower()


def test_two_column_size_and_a_run_id(smoke_study, tmp_path):
    run = open_runs(smoke_study, method="lora")[0]
    out = tmp_path / "figs"
    args = ["figures", run.id, "--runs-dir", str(smoke_study), "--kind", "loss", "--out", str(out)]
    assert cli.main([*args, "--format", "png", "--size", "two-column"]) == 0
    ((stem, fig),) = figures_for("loss", [run])
    assert stem == f"loss-{run.id}"  # file names hold the run id: exports of two runs never collide
    width, height = fig.size_inches("two")
    assert png_size(out / f"{stem}.png") == (round(width * DPI), round(height * DPI))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--kind", "tradeof"], "unknown figure kind 'tradeof'. Did you mean 'tradeoff'?"),
        (["--format", "pdf,jpg"], "unknown figure format(s) jpg"),
    ],
)
def test_bad_kind_or_format_is_one_line(args, message, smoke_study, tmp_path, capsys):
    assert cli.main(["figures", str(smoke_study), "--out", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err


def test_list_and_a_kind_no_run_recorded(smoke_study, tmp_path, capsys):
    assert cli.main(["figures", "--list"]) == 0
    assert "saliency_heatmap" in capsys.readouterr().out
    lora = open_runs(smoke_study, method="lora")[0]
    assert cli.main(["figures", str(lora.path), "--kind", "block_grid", "--out", str(tmp_path)]) == 1
    assert "block_grid: skipped, nothing to draw from these runs (it reads blocks)" in capsys.readouterr().out


@pytest.mark.parametrize("out", ["a-file", "a-file/sub"])
def test_figures_out_at_a_file_is_one_line(tmp_path, capsys, out):
    """Issue 20: `--out` at a file (or under one) was a FileExistsError / NotADirectoryError traceback."""
    from workbench.errors import StoreError
    from workbench.figures import Figure
    from workbench.figures.export import export

    (tmp_path / "a-file").write_text("x")
    with pytest.raises(StoreError, match="cannot write figures to .*a-file"):
        export(Figure.__new__(Figure), tmp_path / out, stem="x", formats=[])
