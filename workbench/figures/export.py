"""Write a `Figure` to files: PNG / SVG / PDF (matplotlib, paper style), HTML (plotly), CSV (its data).

    from workbench.figures import export, tradeoff
    export(tradeoff(frame), "figures/", stem="fig1", formats=("pdf", "png"), size="two")

Vector output keeps text as text (PDF: embedded TrueType, fonttype 42; SVG: <text> elements) and
draws heatmaps as vector cells, so figures stay sharp and editable in a paper.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterable
from pathlib import Path

import matplotlib as mpl

from workbench.errors import StoreError
from workbench.figures.base import Figure
from workbench.figures.style import DPI, PAPER_RC

FORMATS = ("png", "svg", "pdf", "html", "csv")
STATIC_FORMATS = ("png", "svg", "pdf")
MIME = {
    "png": "image/png",
    "svg": "image/svg+xml",
    "pdf": "application/pdf",
    "html": "text/html",
    "csv": "text/csv",
}


def to_bytes(
    fig: Figure, fmt: str, *, size: str = "one", dpi: int = DPI, plotlyjs: bool | str = True
) -> bytes:
    """The file content of `fig` in `fmt` (see FORMATS).

    PNG is exactly `png_pixels(fig, size, dpi)`: round(width * dpi) x round(height * dpi) pixels of
    `fig.size_inches(size)`.
    HTML embeds plotly.js by default (works offline); `plotlyjs="cdn"` makes a small file instead.
    """
    fmt = fmt.lower().lstrip(".")
    if fmt == "csv":
        return fig.data.to_csv(index=False).encode("utf-8")
    if fmt == "html":
        return fig.plotly().to_html(include_plotlyjs=plotlyjs, full_html=True).encode("utf-8")
    if fmt not in STATIC_FORMATS:
        raise ValueError(f"unknown figure format {fmt!r}; formats: {', '.join(FORMATS)}")
    figure = fig.matplotlib(size)
    if fmt == "png":  # Agg truncates width * dpi to whole pixels; aim half a pixel above the stated size
        width, height = png_pixels(fig, size, dpi)
        figure.set_size_inches((width + 0.5) / dpi, (height + 0.5) / dpi)
    buffer = io.BytesIO()
    metadata = {"Title": fig.title} if fmt in ("pdf", "svg") else None
    with mpl.rc_context(PAPER_RC):  # fonttype etc. are read at save time
        figure.savefig(buffer, format=fmt, dpi=dpi, metadata=metadata)
    return buffer.getvalue()


def png_pixels(fig: Figure, size: str = "one", dpi: int = DPI) -> tuple[int, int]:
    """The pixel size of `fig`'s PNG: its paper size in inches times `dpi`, rounded."""
    width, height = fig.size_inches(size)
    return round(width * dpi), round(height * dpi)


def file_stem(text: str) -> str:
    """A safe file name from a figure title or kind."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "figure"


def export(
    fig: Figure,
    out_dir: str | os.PathLike[str],
    *,
    stem: str | None = None,
    formats: Iterable[str] = FORMATS,
    size: str = "one",
    dpi: int = DPI,
) -> list[Path]:
    """Write `fig` as `<out_dir>/<stem>.<fmt>` for every format; returns the paths written.

    An `out_dir` that is a file, lies under one, or cannot be written is one StoreError."""
    out = Path(out_dir)
    stem = file_stem(stem or fig.kind)
    paths = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for fmt in formats:
            path = out / f"{stem}.{fmt.lower().lstrip('.')}"
            path.write_bytes(to_bytes(fig, fmt, size=size, dpi=dpi))
            paths.append(path)
    except FileExistsError:
        raise StoreError(f"cannot write figures to {out}: it is a file, not a directory") from None
    except OSError as err:
        raise StoreError(f"cannot write figures to {out}: {err.strerror or err}") from None
    return paths
