"""Recording must not change a single gradient: the recorded runs vs runs with no recorder, bit for bit."""

from __future__ import annotations

import pytest
import torch
from recorder_helpers import METHODS, GradCapture, make_config

from workbench.orchestration.train import train
from workbench.store import RunReader


@pytest.mark.parametrize("method", METHODS)
def test_recording_changes_no_gradient(recorded, tiny_task, tmp_path, method):
    watched = recorded(method)  # every recorder on, steps 1, 2, 4 recorded, frozen weights observed
    bare = GradCapture()
    plain = train(make_config(tiny_task, tmp_path, method), progress=False, recorders=[bare])

    assert bare.grads.keys() == watched.grads.keys() == {1, 2, 3, 4}
    for step, grads in bare.grads.items():
        assert grads.keys() == watched.grads[step].keys()
        for name, grad in grads.items():
            assert torch.equal(grad, watched.grads[step][name]), f"step {step}: {name} differs"
    trained = RunReader(plain.run_dir).tensors("adapter")
    again = watched.run.tensors("adapter")
    assert trained.keys() == again.keys()
    assert all(torch.equal(trained[k], again[k]) for k in trained)
    assert plain.summary["final_loss"] == watched.run.summary["final_loss"]
