"""Timing recorder: step phases every step, recording time, selection phases and evaluation."""

from __future__ import annotations

from recorder_helpers import STEPS


def test_step_phases_every_step_and_recording_time(recorded):
    timing = recorded("sage").run.table("timing")
    steps = timing.query("step >= 1 and phase != 'eval'")
    assert steps.groupby("step")["phase"].apply(set).to_dict() == {
        s: {"forward", "backward", "optimizer", "recording"} for s in range(1, STEPS + 1)
    }
    assert (timing["seconds"] >= 0).all()
    recording = steps.query("phase == 'recording'").set_index("step")["seconds"]
    assert recording[1] > recording[3]  # step 1 probes and records everything; step 3 almost nothing
    assert set(timing.query("phase == 'eval'")["step"]) == {0, STEPS}


def test_selection_phases_are_timed_at_step_0(recorded):
    assert set(recorded("smt").run.table("timing").query("phase == 'warmup'")["step"]) == {0}
    assert set(recorded("spsft").run.table("timing").query("phase == 'importance'")["step"]) == {0}
