"""Hostile inputs: every bad file, value or flag is one WorkbenchError (the CLI: one `error:` line, exit
2) raised before anything is written to the run store; never a traceback, a hang or a silent default.

Also two sweeps sharing one runs dir (each point claimed once: workbench.orchestration.claims), and
property-based tests (hypothesis) of the config and task-file readers on random input.
"""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.cli import main
from workbench.config import RunConfig, apply_overrides, load_toml, parse_value, toml_value
from workbench.data import load_task
from workbench.errors import ConfigError, WorkbenchError
from workbench.orchestration import claims
from workbench.orchestration.sweeps import MAX_POINTS, format_summary, parse_grid, run_grid, run_key
from workbench.store import list_runs

CLI = [sys.executable, "-c", "import sys; from workbench.cli import main; sys.exit(main())"]


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    """The CLI's stderr is exactly one line `error: ...`: return it."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# ---- task files -------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_task_file_that_is_not_utf8_is_one_error_naming_it(tmp_path, suffix):
    path = tmp_path / f"task{suffix}"
    good = '{"prompt": "a", "answer": "b"}\n' if suffix == ".jsonl" else "prompt,answer\n"
    path.write_bytes(good.encode() + b"\xff\xfe\x00\x01binary\n")
    with pytest.raises(ConfigError, match=r"task file .*task\.\w+' is not UTF-8 text \(line 2: byte 0xff"):
        load_task(str(path))


def test_deeply_nested_json_in_a_task_file_is_one_error(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text("[" * 100_000 + "\n")
    with pytest.raises(ConfigError, match="line 1 is JSON nested too deep"):
        load_task(str(path))
    choices = tmp_path / "deep.csv"  # a CSV 'choices' cell that looks like JSON
    choices.write_text("prompt,choices,label\n" + "q," + "[" * 100_000 + ",0\nr,a|b,1\n")
    with pytest.raises(ConfigError, match="'choices' starts with '\\[' but is no valid JSON list"):
        load_task(str(choices))


def test_a_csv_field_over_128_kib_is_read_and_one_over_16_mib_is_one_error(tmp_path):
    """csv's own limit (128 KiB) is raised to MAX_FIELD_BYTES: a long prompt is read (and later cut by
    train.max_length like any other); beyond 16 MiB the file is one error naming the file and line."""
    path = tmp_path / "long.csv"
    path.write_text("prompt,answer\n" + "x" * 200_000 + ",yes\nshort,no\n")
    task = load_task(str(path))
    assert max(len(e.prompt) for e in task.train + task.eval) == 200_000
    huge = tmp_path / "huge.csv"
    huge.write_text("prompt,answer\nshort,no\n" + "x" * (16 * 2**20 + 1) + ",yes\n")
    with pytest.raises(
        ConfigError, match=r"huge\.csv: line 3 is not readable CSV \(a field is longer than 16 MiB"
    ):
        load_task(str(huge))


def test_an_unpaired_surrogate_in_a_task_file_is_one_error(tmp_path):
    path = tmp_path / "surrogate.jsonl"
    path.write_text('{"prompt": "a\\ud800", "answer": "x"}\n{"prompt": "b", "answer": "y"}\n')
    with pytest.raises(ConfigError, match="line 1: 'prompt' holds an unpaired surrogate"):
        load_task(str(path))


# ---- config files and overrides ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "a = " + "[" * 10_000 + "]" * 10_000,
        "a = " + "{b = " * 5_000 + "1" + "}" * 5_000,
        "[train]\nlr = " + "9" * 5_000,  # an integer past Python's 4,300-digit limit
    ],
    ids=["arrays", "inline-tables", "huge-int"],
)
def test_a_config_file_nested_too_deep_or_too_large_is_one_error(tmp_path, text):
    path = tmp_path / "deep.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_toml(path)


def test_a_set_value_nested_too_deep_is_one_error():
    with pytest.raises(ConfigError, match="nested too deep"):
        apply_overrides({}, ["train.steps=" + "[" * 10_000 + "]" * 10_000])
    with pytest.raises(ConfigError, match="cannot read the value"):
        apply_overrides({}, ["train.steps=" + "9" * 5_000])


@pytest.mark.parametrize(
    "data, overrides, message",
    [
        ({"train": 5}, ["train.steps=3"], "train must be a table of key = value to take --set train.steps"),
        ({"record": "x"}, ["record.memory=false"], "record must be a table of key = value"),
        ({"method_options": 5}, ["method.r=4"], "method must be a table of key = value"),
        ({"method": 5}, ["method.r=4"], "RunConfig.method must be str, got 5"),
        ({"train": 0}, [], "train must be a table of key = value"),  # was silently the defaults
        ({"record": []}, [], "record must be a table of key = value"),
        ({"method_options": 0}, [], "method options for 'lora' must be LoraOptions"),
    ],
)
def test_a_scalar_where_a_table_belongs_is_one_error(data, overrides, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_dict(apply_overrides(data, overrides))


def test_a_scalar_train_in_the_config_file_with_a_cli_flag_is_one_line(tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text("train = 5\n")
    runs = tmp_path / "runs"
    code, _, err = cli(capsys, "run", "--config", str(path), "--steps", "3", "--runs-dir", str(runs))
    assert code == 2 and "train must be a table" in one_error_line(err)
    assert not runs.exists()


@pytest.mark.parametrize(
    "train, message",
    [
        ({"weight_decay": -0.1}, "train.weight_decay must be a finite number >= 0, got -0.1"),
        ({"weight_decay": math.nan}, "train.weight_decay must be a finite number >= 0, got nan"),
        ({"weight_decay": 10**400}, "TrainConfig.weight_decay must be a finite number"),
        ({"lr": math.nan}, "train.lr must be a finite number > 0, got nan"),
        ({"lr": math.inf}, "train.lr must be a finite number > 0, got inf"),
        ({"lr": 10**400}, "train.lr must be a finite number > 0"),
        ({"lr": 0}, "train.lr must be a finite number > 0, got 0"),
        ({"max_grad_norm": math.inf}, "train.max_grad_norm must be a finite number >= 0"),
        ({"max_grad_norm": -1}, "train.max_grad_norm must be a finite number >= 0"),
        ({"warmup_ratio": math.nan}, "train.warmup_ratio must be a number in [0, 1), got nan"),
        ({"warmup_ratio": 1}, "train.warmup_ratio must be a number in [0, 1)"),
        ({"seed": 2**63}, "train.seed must be a 64-bit integer"),
        ({"seed": -(2**63) - 1}, "train.seed must be a 64-bit integer"),
        ({"steps": 2**63}, "train.steps must be <= 1,000,000,000"),
        ({"batch_size": 100_000_000}, "train.batch_size must be <= 65,536"),
        ({"eval_batch_size": 100_000_000}, "train.eval_batch_size must be <= 65,536"),
        ({"grad_accum": 10**9}, "train.grad_accum must be <= 65,536"),
        ({"max_length": 2**40}, "train.max_length must be <= 1,048,576"),
        ({"batch_size": 65_536, "max_length": 128}, "must be <= 4,194,304 tokens per micro-batch"),
        ({"max_new_tokens": 10**9}, "train.max_new_tokens must be <= 1,048,576"),
        ({"eval_examples": 2**63}, "train.eval_examples must be <= 1,000,000,000"),
        ({"train_examples": 2**63}, "train.train_examples must be in [1, 1,000,000,000]"),
        ({"flush_every": 2**63}, "train.flush_every must be <= 1,000,000,000"),
    ],
)
def test_train_values_out_of_range_are_one_error(train, message):
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict({"train": train})
    assert message in str(info.value)


def test_the_bounds_keep_real_settings():
    config = RunConfig.from_dict(
        {"train": {"seed": -1, "batch_size": 512, "max_length": 2048, "lr": 1, "weight_decay": 0}}
    )
    assert (config.train.seed, config.train.lr, config.train.weight_decay) == (-1, 1, 0.0)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--lr", "nan"], "train.lr must be a finite number > 0, got nan"),
        (["--lr", "inf"], "train.lr must be a finite number > 0, got inf"),
        (["--batch-size", "100000000"], "train.batch_size must be <= 65,536"),
        (["--seed", str(2**63)], "train.seed must be a 64-bit integer"),
        (["--steps", str(2**63)], "train.steps must be <= 1,000,000,000"),
        (["--set", "train.weight_decay=-1"], "train.weight_decay must be a finite number >= 0"),
    ],
)
def test_cli_flags_out_of_range_are_one_line_and_write_nothing(tiny_task, tmp_path, capsys, flags, message):
    runs = tmp_path / "runs"
    start = time.perf_counter()
    code, _, err = cli(
        capsys, "run", "--model", "tiny-llama", "--task", tiny_task, "--runs-dir", str(runs), *flags
    )
    assert code == 2 and message in one_error_line(err)
    assert time.perf_counter() - start < 10 and not runs.exists()


# ---- runs dir, output dir, closed stdout -------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--model", "tiny-llama", "--runs-dir", ""],
        ["ls", "--runs-dir", ""],
        ["show", "latest", "--runs-dir", " "],
        ["sweep", "--config", "sweep.toml", "--runs-dir", ""],
        ["figures", "latest", "--runs-dir", ""],
    ],
    ids=["run", "ls", "show", "sweep", "figures"],
)
def test_an_empty_runs_dir_is_one_error(capsys, argv):
    code, _, err = cli(capsys, *argv)
    assert code == 2 and "runs_dir must not be empty" in one_error_line(err)


def test_an_empty_runs_dir_is_refused_by_the_library_too(tmp_path):
    with pytest.raises(ConfigError, match="runs_dir must not be empty"):
        RunConfig.from_dict({"runs_dir": ""})
    with pytest.raises(ConfigError, match="runs_dir must not be empty"):
        run_grid({"methods": ["lora"]}, "", progress=False)
    with pytest.raises(ConfigError, match="runs_dir must be a non-empty directory name"):
        parse_grid({"methods": ["lora"], "runs_dir": ""})


def test_figures_with_an_empty_out_is_one_error(tmp_path, capsys):
    code, _, err = cli(capsys, "figures", str(tmp_path), "--out", "")
    assert code == 2 and "--out must not be empty" in one_error_line(err)


def test_a_closed_stdout_exits_quietly(tmp_path):
    """`workbench ls | head`: the reader is gone before the listing is written."""
    proc = subprocess.Popen(
        [*CLI, "ls", "--runs-dir", str(tmp_path / "none")], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()  # before the child has imported anything
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err


def test_a_broken_pipe_in_a_command_returns_141(monkeypatch, capsys):
    import workbench.cli as cli_module

    def closed(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli_module, "cmd_ls", closed)  # make_parser binds it when main builds the parser
    assert main(["ls"]) == 141
    assert capsys.readouterr().err == ""


# ---- sweeps: axes, size, claims ----------------------------------------------------------------------


def test_an_empty_axis_is_one_error_naming_it():
    with pytest.raises(ConfigError, match=r"\[methods.lora\]: the axis method.r is an empty list"):
        parse_grid({"methods": {"lora": {"r": []}}})
    with pytest.raises(ConfigError, match="the axis train.lr is an empty list"):
        parse_grid({"methods": ["lora"], "train": {"lr": []}})


def test_a_grid_too_large_is_refused_before_it_is_expanded():
    axis = list(range(1, 101))
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=f"has 100,000,000 points .* more than the {MAX_POINTS:,}"):
        parse_grid({"methods": {"lora": {"r": axis, "alpha": axis}}, "train": {"steps": axis, "seed": axis}})
    assert time.perf_counter() - start < 2


def sweep_grid(task: str, runs_dir: Path, **extra) -> dict:
    return {
        "name": "h",
        "model": "tiny-llama",
        "task": task,
        "runs_dir": str(runs_dir),
        "train": {"steps": 2, "batch_size": 4, "eval_examples": 4, "flush_every": 1, "max_length": 32},
        "record": {"saliency": False, "grads": False, "fidelity": False},
        "methods": {"lora": {"r": [2, 4]}},
        **extra,
    }


def test_a_stale_claim_is_stolen_and_a_live_one_is_not(tmp_path):
    key = "a" * 16
    path = claims.claim_path(tmp_path, key)
    path.parent.mkdir(parents=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)  # finished and reaped: no such process now
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid, "started": "x", "token": "t"}))
    with claims.claimed(tmp_path, key) as claim:
        assert claim is not None and claim.owner["pid"] == os.getpid()
        assert claims.read_owner(path) == claim.owner
        with claims.claimed(tmp_path, key) as second:  # held by a live process (this one): not stolen
            assert second is None
        assert f"pid {os.getpid()}" in claims.claim_owner(tmp_path, key)
    assert not path.exists()  # released when the block ended
    # another host's claim is never stolen; an unreadable one only after the grace period
    path.write_text(json.dumps({"host": "elsewhere.invalid", "pid": dead_pid}))
    assert claims.try_claim(tmp_path, key) is None
    path.write_text("")
    assert claims.try_claim(tmp_path, key) is None
    old = time.time() - claims.UNREADABLE_GRACE_S - 5
    os.utime(path, (old, old))
    claim = claims.try_claim(tmp_path, key)
    assert claim is not None
    claim.release()
    assert not path.exists()
    assert [p.name for p in path.parent.iterdir()] == []  # no leftovers of the steal


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="Linux /proc")
def test_a_claim_of_a_reused_pid_or_a_zombie_is_stale(tmp_path):
    from workbench.store.reader import process_start

    host = socket.gethostname()
    path = claims.claim_path(tmp_path, "k")
    path.parent.mkdir(parents=True)
    # this pid, but started at another time: the claim's process is gone, its pid reused (by us)
    path.write_text(
        json.dumps({"host": host, "pid": os.getpid(), "process_start": process_start(os.getpid()) + 1})
    )
    claim = claims.try_claim(tmp_path, "k")
    assert claim is not None
    claim.release()
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # exits, not reaped until wait()
    try:
        deadline = time.time() + 30
        while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.time() < deadline
            time.sleep(0.05)
        path.write_text(json.dumps({"host": host, "pid": zombie.pid}))
        assert claims.try_claim(tmp_path, "k") is not None
    finally:
        zombie.wait()


def test_a_claim_is_released_when_the_block_fails(tmp_path):
    with pytest.raises(RuntimeError), claims.claimed(tmp_path, "k") as claim:
        assert claim is not None
        raise RuntimeError("boom")
    assert claims.try_claim(tmp_path, "k") is not None


def test_a_point_claimed_by_a_live_sweep_is_skipped_then_collected(tiny_task, tmp_path):
    runs = tmp_path / "runs"
    grid = parse_grid(sweep_grid(tiny_task, runs))
    held = claims.try_claim(runs, run_key(grid.points[1].config(runs).to_dict()))
    assert held is not None
    result = run_grid(grid, progress=False)
    assert [o.action for o in result.outcomes] == ["ran", "claimed"]
    text = format_summary(result)
    assert "claimed elsewhere: h-lora r=4: another sweep runs it" in text
    assert "1 ran, 0 reused, 0 failed, 1 claimed elsewhere" in text
    assert not any(e.id.startswith(".") for e in list_runs(runs))  # the claims dir is no run
    held.release()
    again = run_grid(grid, progress=False)
    assert [o.action for o in again.outcomes] == ["reused", "ran"]


def test_two_sweeps_on_one_runs_dir_run_each_point_once(tiny_task, tmp_path):
    runs = tmp_path / "runs"
    path = tmp_path / "sweep.toml"
    path.write_text(
        f'name = "twice"\nmodel = "tiny-llama"\ntask = "{tiny_task}"\nruns_dir = "{runs}"\n'
        "[train]\nsteps = 2\nbatch_size = 4\neval_examples = 4\nmax_length = 32\n"
        "[record]\nsaliency = false\ngrads = false\nfidelity = false\n"
        "[methods.lora]\nr = [2, 4]\nalpha = [8, 16]\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [*CLI, "sweep", "--config", str(path), "--quiet"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    entries = list_runs(runs)
    assert len(entries) == 4 and {e.reader.status for e in entries} == {"completed"}
    assert len({run_key(e.reader.config) for e in entries}) == 4  # each point completed once
    ran = sum(int(out.split(" ran, ")[0].rsplit("\n", 1)[-1]) for out, _ in outputs)
    assert ran == 4, outputs
    assert not list((runs / ".claims").iterdir())  # every claim released
    final = run_grid(path, progress=False)
    assert [o.action for o in final.outcomes] == ["reused"] * 4


# ---- property-based: random configs and task files ----------------------------------------------------

KEYS = [
    "model", "task", "method", "train", "record", "name", "runs_dir", "template", "method_options",
    "steps", "lr", "batch_size", "seed", "weight_decay", "max_length", "warmup_ratio", "max_grad_norm",
    "max_new_tokens", "train_examples", "eval_examples", "memory", "r", "targets", "x",
]  # fmt: skip
SCALARS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**63, 2**64, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["lora", "full", "tiny-llama", "chat", "plain", "auto", "", " "]),
    st.booleans(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=4),
    max_leaves=12,
)


def toml_text(value) -> str:
    """A tiny TOML writer: inline values only."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return toml_value(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_text(v) for v in value) + "]"
    return "{" + ", ".join(f"{k} = {toml_text(v)}" for k, v in value.items()) + "}"


OVERRIDE_KEYS = [
    *("train.steps", "train.lr", "train.seed", "record.memory", "method.r", "task.template"),
    *("name", "train", "x.y"),
]


TRAIN_KEYS = ["steps", "lr", "batch_size", "seed", "weight_decay", "max_length", "warmup_ratio"]
TRAIN_KEYS += ["max_grad_norm", "max_new_tokens", "train_examples", "eval_examples", "grad_accum"]
# mostly the right shape, so that many documents get as far as the range checks (or pass them)
SHAPED = st.fixed_dictionaries(
    {},
    optional={
        "model": st.sampled_from(["tiny-llama", "smollm2-135m"]),
        "method": st.sampled_from(["lora", "full", "sage", "nope"]),
        "train": st.dictionaries(st.sampled_from(TRAIN_KEYS), SCALARS, max_size=4),
        "record": st.dictionaries(st.sampled_from(["memory", "grads_every", "probe_examples"]), SCALARS),
        "runs_dir": SCALARS,
        "name": SCALARS,
    },
)


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    document=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6) | SHAPED,
    overrides=st.lists(st.tuples(st.sampled_from(OVERRIDE_KEYS), SCALARS), max_size=3),
    raw=st.text(max_size=40),
)
def test_random_configs_give_a_config_or_one_workbench_error(tmp_path_factory, document, overrides, raw):
    path = tmp_path_factory.getbasetemp() / "random.toml"
    text = "".join(f"{k} = {toml_text(v)}\n" for k, v in document.items())
    for content in (text, raw, text + raw):
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
        try:
            RunConfig.from_dict(
                apply_overrides(load_toml(path), [f"{k}={toml_text(v)}" for k, v in overrides])
            )
        except WorkbenchError:
            pass


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
FIELDS = ["prompt", "answer", "choices", "label", "x"]
RECORD = st.dictionaries(
    st.sampled_from(FIELDS),
    JSON | st.sampled_from(["a", "b", "a|b", '["a", "b"]', "0", "1", " "]) | st.integers(0, 3),
    max_size=5,
)


def loads_or_one_error(path: Path) -> None:
    try:
        load_task(str(path))
    except WorkbenchError:
        pass


@settings(max_examples=500, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300), text=st.text(max_size=300))
def test_random_bytes_and_text_as_task_files_give_a_task_or_one_error(tmp_path_factory, data, text):
    base = tmp_path_factory.getbasetemp()
    for suffix in (".jsonl", ".csv"):
        path = base / f"random{suffix}"
        for content in (data, text.encode("utf-8", "surrogatepass")):
            path.write_bytes(content)
            loads_or_one_error(path)


@settings(max_examples=500, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(RECORD, max_size=6))
def test_random_records_as_task_files_give_a_task_or_one_error(tmp_path_factory, records):
    base = tmp_path_factory.getbasetemp()
    jsonl = base / "records.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8", errors="surrogatepass")
    loads_or_one_error(jsonl)
    table = base / "records.csv"
    with table.open("w", newline="", encoding="utf-8", errors="surrogatepass") as fh:
        writer = csv.writer(fh)
        header = sorted({k for r in records for k in r})
        writer.writerow(header)
        for r in records:
            writer.writerow([r[k] if isinstance(r.get(k), str) else json.dumps(r.get(k)) for k in header])
    loads_or_one_error(table)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    value=st.text(alphabet=st.characters(blacklist_categories=("Cs",)))
    | st.floats()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.booleans()
)
def test_cli_flag_values_read_back_as_given(value):
    """`workbench run --name/--lr/...` values travel as `key=toml_value(v)` through parse_value."""
    back = parse_value(toml_value(value))
    assert back == value or (math.isnan(value) and math.isnan(back)), (value, back)
