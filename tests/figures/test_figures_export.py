"""Every figure kind exports in every format: files exist, PDF/SVG hold vector text (and vector heatmap
cells), PNG has the stated pixel size, CSV is the figure's data, HTML is an interactive plotly page."""

from __future__ import annotations

import io
import struct

import pandas as pd
import pytest

from workbench.errors import ConfigError
from workbench.figures import FIGURES, FORMATS, HeatmapSpec, export, figures_for, to_bytes
from workbench.figures.style import DPI

TEST_DPI = 60  # small PNGs keep the test fast; the size rule is the same at any dpi


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("kind", FIGURES.names())
def test_every_kind_exports_every_format(kind, synthetic_runs, out_dir) -> None:
    built = figures_for(kind, synthetic_runs)
    assert built, f"{kind}: no figure from the synthetic runs"
    stem, fig = built[0]
    assert not fig.empty
    paths = export(fig, out_dir, stem=stem, formats=FORMATS, size="one", dpi=TEST_DPI)
    files = {p.suffix[1:]: p.read_bytes() for p in paths}
    assert set(files) == set(FORMATS) and all(files.values())
    width, height = fig.size_inches("one")
    assert png_size(files["png"]) == (round(width * TEST_DPI), round(height * TEST_DPI))
    pdf, svg = files["pdf"], files["svg"].decode()
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf  # TrueType embedded: fonttype 42
    assert "<text" in svg  # text stays text
    if isinstance(fig.spec, HeatmapSpec):  # cells are vector rectangles, never an embedded image
        assert b"/Subtype /Image" not in pdf and "<image" not in svg
    assert "plotly" in files["html"].decode()[:200_000].lower()
    csv = pd.read_csv(io.BytesIO(files["csv"]))
    assert list(csv.columns) == list(fig.data.columns) and len(csv) == len(fig.data)


def test_two_column_size_and_default_dpi(synthetic_runs) -> None:
    _, fig = figures_for("memory_blocks", synthetic_runs)[0]
    one, two = fig.size_inches("one"), fig.size_inches("two")
    assert one[0] == pytest.approx(3.4) and two[0] == pytest.approx(7.0)
    assert png_size(to_bytes(fig, "png", size="two")) == (round(two[0] * DPI), round(two[1] * DPI))


def test_html_can_link_plotly_instead_of_embedding(synthetic_runs) -> None:
    _, fig = figures_for("tradeoff", synthetic_runs)[0]
    small, full = to_bytes(fig, "html", plotlyjs="cdn"), to_bytes(fig, "html")
    assert len(small) < 100_000 < len(full)


def test_unknown_kind_and_format(synthetic_runs) -> None:
    with pytest.raises(ConfigError, match="Did you mean 'tradeoff'"):
        figures_for("tradeof", synthetic_runs)
    _, fig = figures_for("loss", synthetic_runs)[0]
    with pytest.raises(ValueError, match="unknown figure format"):
        to_bytes(fig, "bmp")


def test_per_run_kinds_skip_runs_without_the_table(synthetic_runs) -> None:
    grids = figures_for("block_grid", synthetic_runs)
    assert [stem.split("-")[-1] for stem, _ in grids] == ["smt"]
    assert figures_for("block_grid", [r for r in synthetic_runs if r.config["method"] == "lora"]) == []
