"""Adding a method is adding one folder: a throwaway method package, outside the source tree, is found by
discovery and picked up by the CLI and by the generic tests' parametrisation, with nothing else edited.

The package sits in a temporary directory named by WORKBENCH_METHOD_PATH (discovery treats its packages
as if they were in workbench/methods/). Everything runs in subprocesses, so the registry of this test
process never sees the throwaway method.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from workbench.methods.registry import METHOD_PATH_VARIABLE

TESTS = Path(__file__).resolve().parents[1]

# A real (if modest) method: only the RMSNorm weights train. Written as the docs' "Adding a method" says.
THROWAWAY = '''
"""Norm tuning: only the normalisation weights train (a throwaway method for the plug-in test)."""

from dataclasses import dataclass

import torch
from torch import nn

from workbench.methods.base import MethodDefaults, PrepareContext, freeze
from workbench.methods.registry import register_method
from workbench.models.anatomy import ModelAnatomy
from workbench.validation import Validated, require


@dataclass
class NormOptions(Validated):
    final: bool = True  # also the final norm before the LM head
    scale: float = 1.0  # multiplies the initial norm weights

    def validate(self) -> None:
        require(self.scale > 0, f"method.scale must be > 0, got {self.scale}")


@register_method
class NormTuning(MethodDefaults):
    name = "throwaway"
    default_lr = 1e-2
    options_class = NormOptions
    table_options = ("final",)
    color = "#777777"
    tiny_options = {"scale": 1.0}

    def __init__(self, options: NormOptions) -> None:
        self.options = options
        self.model: nn.Module | None = None

    def check(self, anatomy: ModelAnatomy) -> None:
        pass

    def prepare(self, ctx: PrepareContext) -> None:
        self.model = ctx.model
        freeze(self.model)
        for name, p in self.model.named_parameters():
            if "norm" in name and (self.options.final or "layers." in name):
                p.requires_grad_(True)

    def trainable_parameters(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def adapter_state(self) -> dict[str, torch.Tensor]:
        return {n: p.detach() for n, p in self.trainable_parameters().items()}

    def restore(self, model: nn.Module, anatomy: ModelAnatomy, state: dict[str, torch.Tensor]) -> None:
        self.model = model
        model.load_state_dict(state, strict=False)

    def merge(self) -> nn.Module:
        return self.model
'''


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    """The environment of a process that sees the throwaway method package."""
    root = tmp_path_factory.mktemp("plugins")
    (root / "throwaway").mkdir()
    (root / "throwaway" / "__init__.py").write_text(textwrap.dedent(THROWAWAY))
    return {**os.environ, METHOD_PATH_VARIABLE: str(root), "OMP_NUM_THREADS": "1"}


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from workbench.cli import main; sys.exit(main())", *args]


def test_the_cli_lists_and_runs_the_new_method(plugin_env, tiny_task, tmp_path):
    shown = run(cli("run", "--help"), plugin_env, tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "throwaway" in shown.stdout

    trained = run(
        cli(
            *("run", "--method", "throwaway", "--model", "tiny-llama", "--task", tiny_task),
            *("--steps", "2", "--max-length", "32", "--runs-dir", str(tmp_path / "runs"), "--quiet"),
        ),
        plugin_env,
        tmp_path,
    )
    assert trained.returncode == 0, trained.stderr
    listed = run(cli("ls", "--runs-dir", str(tmp_path / "runs")), plugin_env, tmp_path)
    assert "throwaway" in listed.stdout and "completed" in listed.stdout

    unknown = run(cli("run", "--method", "throwaway2", "--model", "tiny-llama"), plugin_env, tmp_path)
    assert unknown.returncode != 0 and "Did you mean 'throwaway'?" in unknown.stderr


def test_the_generic_tests_parametrise_over_the_new_method(plugin_env):
    generic = [
        "methods/test_method_matrix.py",
        "recorders/test_no_perturbation.py",
    ]
    pytest_args = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q"]
    collected = run([*pytest_args, "--collect-only", *generic], plugin_env, TESTS)
    assert collected.returncode == 0, collected.stdout + collected.stderr
    ids = collected.stdout
    assert "test_run_completes_and_records[throwaway]" in ids
    assert "test_export_reproduces_the_trained_model[throwaway]" in ids
    assert "test_bad_option_names_the_method_field[throwaway]" in ids
    assert "test_recording_changes_no_gradient[throwaway]" in ids
    # it declares no `requires`: the whole LLaMA layout, so the other block styles but not GPT-2
    assert "test_other_models_train_record_and_export[tiny-olmo2-throwaway]" in ids
    assert "test_methods_needing_the_llama_layout_refuse_gpt2_before_writing[throwaway]" in ids

    ran = run([*pytest_args, "-k", "throwaway", *generic], plugin_env, TESTS)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    # the four matrix checks (one on a generative task), recording-changes-no-gradient, three other
    # models, the GPT-2 refusal
    assert "9 passed" in ran.stdout
