"""The measurement functions are public (issue 17, part 3): `wb.track_saved_tensors`, `wb.static_bytes`,
`wb.static_bytes_by_location`, `wb.locate`, and their docstring examples run as written."""

from __future__ import annotations

import doctest

import pytest

import workbench as wb
import workbench.memory.saved
import workbench.memory.static


def test_the_measurement_functions_are_top_level_names():
    from workbench.memory import locate, static_bytes, static_bytes_by_location, track_saved_tensors

    assert wb.track_saved_tensors is track_saved_tensors and wb.static_bytes is static_bytes
    assert wb.static_bytes_by_location is static_bytes_by_location and wb.locate is locate
    assert {"track_saved_tensors", "static_bytes"} <= set(dir(wb))


@pytest.mark.parametrize("name", ["saved", "static"])
def test_docstring_examples_run(name):
    module = {"saved": workbench.memory.saved, "static": workbench.memory.static}[name]
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4 and result.failed == 0
