"""A recorder that fails, or a store that cannot take rows, stops the run with a clear message; a killed
run keeps what it flushed and reads back as interrupted."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from recorder_helpers import make_config

from workbench.errors import RunStopped
from workbench.orchestration.train import train
from workbench.recorders import RecorderBase, StepInfo
from workbench.store import list_runs


class Broken(RecorderBase):
    name = "broken"

    def on_step_end(self, info: StepInfo) -> None:
        if info.step == 2:
            raise ValueError("cannot keep up")


def test_a_failing_recorder_stops_the_run_and_names_itself(tiny_task, tmp_path):
    config = make_config(tiny_task, tmp_path, "lora", flush_every=1)
    with pytest.raises(RunStopped, match="the broken recorder failed at the end of step 2: ValueError"):
        train(config, progress=False, recorders=[Broken()])
    (entry,) = list_runs(tmp_path)
    assert entry.reader.status == "failed"
    assert (
        "broken recorder failed at the end of step 2: ValueError: cannot keep up"
        in entry.reader.status_message
    )
    assert sorted(entry.reader.table("metrics").query("name == 'loss'")["step"]) == [1]  # flushed before


def test_a_full_disk_stops_the_run_instead_of_losing_rows(tiny_task, tmp_path, monkeypatch):
    real_replace = os.replace

    def replace(src, dst):  # the disk fills up: table parts cannot be written, the small manifest can
        if Path(dst).name.startswith("part-"):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(
        RunStopped, match=r"could not write the recorded rows at step 2 .*No space left on device"
    ):
        train(make_config(tiny_task, tmp_path, "lora", flush_every=2), progress=False)
    (entry,) = list_runs(tmp_path)
    assert entry.reader.status == "failed"
    assert (
        "at step 2" in entry.reader.status_message
        and "No space left on device" in entry.reader.status_message
    )


SCRIPT = """
import sys
import torch
torch.set_num_threads(1)
sys.path.insert(0, {helpers!r})
from recorder_helpers import RECORD_ALL, make_config
from workbench.orchestration.train import train
config = make_config({task!r}, {runs!r}, "lora", RECORD_ALL, steps=100000, flush_every=1, eval_examples=0)
train(config, progress=False)
"""


def test_a_killed_run_keeps_its_flushed_rows_and_reads_back_interrupted(tiny_task, tmp_path):
    script = SCRIPT.format(helpers=str(Path(__file__).parent), task=tiny_task, runs=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        # one metrics part per step (flush_every = 1): with step 3's part, the flushes of 1 and 2 are whole
        while len(list(tmp_path.glob("*/metrics/part-*.parquet"))) < 3:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the run never flushed its rows"
            time.sleep(0.1)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    (entry,) = list_runs(tmp_path)
    run = entry.reader
    assert run.status == "interrupted"
    losses = sorted(run.table("metrics").query("name == 'loss'")["step"])
    assert losses == list(range(1, len(losses) + 1)) and len(losses) >= 2
    assert {1, 2} <= set(run.table("grads")["step"])  # RECORD_ALL: every 2 steps, and step 1
    assert {1, 2} <= set(run.table("saliency")["step"]) and {1, 2} <= set(run.table("memory")["step"])
