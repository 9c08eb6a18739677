"""WorkbenchCallback (issue 17, part 2): a transformers.Trainer run recorded with the raw gradients."""

from __future__ import annotations

import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from workbench.integrations.hf import WorkbenchCallback
from workbench.memory import locate
from workbench.models import load_model
from workbench.recorders.grads import grad_label
from workbench.store import resolve_run

EXAMPLES, LENGTH = 4, 12


def _data(vocab: int) -> list[dict[str, torch.Tensor]]:
    ids = torch.randint(3, vocab, (EXAMPLES, LENGTH), generator=torch.Generator().manual_seed(0))
    return [{"input_ids": row, "labels": row, "attention_mask": torch.ones_like(row)} for row in ids]


def _hand_norms(model: torch.nn.Module, data) -> dict[tuple[int, str], float]:
    """Gradient norms per (block, module) of one step on all examples: the mean token loss (every micro-batch
    has the same number of label tokens, so the Trainer's accumulation gives exactly this mean)."""
    batch = {k: torch.stack([d[k] for d in data]) for k in data[0]}
    model.zero_grad()
    model(**batch).loss.backward()
    groups: dict[tuple[int, str], list[torch.Tensor]] = {}
    for name, p in model.named_parameters():
        groups.setdefault(grad_label(name), []).append(p.grad.flatten())
    model.zero_grad()
    return {label: float(torch.cat(g).norm()) for label, g in groups.items()}


def test_the_trainer_run_records_gradients_before_clipping(tmp_path):
    loaded = load_model("tiny-llama")
    model, tokenizer = loaded.model, loaded.tokenizer
    data = _data(model.config.vocab_size)
    expected = _hand_norms(model, data)  # at the initial weights: the gradients of step 1
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        max_steps=2,
        learning_rate=1e-3,
        max_grad_norm=1e-3,  # clipping scales every gradient down by about 1000x
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    callback = WorkbenchCallback(
        runs_dir=str(tmp_path / "runs"),
        name="trainer",
        record={"grads_every": 1, "saliency_every": 1},
        probe=[("red sky. colour:", " red")],
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=data, callbacks=[callback], processing_class=tokenizer
    )
    trainer.train()
    # the saved-tensor tracking of each step ended (not left on the thread by autograd's own state)
    assert torch._C._autograd._top_saved_tensors_default_hooks(False) is None

    run = resolve_run(tmp_path / "runs", "latest")
    assert run.status == "completed" and run.config["kind"] == "profiled"
    assert run.config["train"]["steps"] == 2 and run.config["train"]["grad_accum"] == 2
    norms = run.table("grads").query("step == 1 and stat == 'norm'")
    recorded = {(int(r.layer), r.module): r.value for r in norms.itertuples()}
    assert recorded.keys() == expected.keys()
    for label, value in expected.items():
        assert recorded[label] == pytest.approx(value, rel=1e-4), label
    total = sum(v**2 for v in expected.values()) ** 0.5
    assert total > 100 * args.max_grad_norm  # so clipped gradients could not pass for the raw ones

    memory = run.table("memory").query("source == 'logical'")
    assert set(memory["step"]) == {1, 2}
    by_category = memory.query("step == 1").groupby("category")["bytes"].sum()
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    count = len(list(model.parameters()))
    # AdamW's two moments and its step counters, after the step
    assert 2 * parameters < by_category["optimizer_state"] <= 2 * parameters + 8 * count
    assert by_category["gradients"] == parameters
    assert by_category["saved_activations"] > 0
    assert {locate("model.layers.0.self_attn")[0]} <= set(memory["layer"])
    assert set(run.table("timing")["phase"]) == {"forward", "backward", "optimizer", "recording"}
    assert len(run.table("metrics").query("name == 'loss'")) == 2
    assert set(run.table("saliency")["step"]) == {1, 2}


class _Breaks(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 2:
            raise RuntimeError("disk full")


def test_a_trainer_that_dies_leaves_the_run_interrupted_with_its_steps(tmp_path):
    model = load_model("tiny-llama").model
    args = TrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=2,
        max_steps=4,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    callback = WorkbenchCallback(runs_dir=str(tmp_path / "runs"), record={"saliency": False})
    trainer = Trainer(
        model=model, args=args, train_dataset=_data(model.config.vocab_size), callbacks=[callback, _Breaks()]
    )
    with pytest.raises(RuntimeError, match="disk full"):
        trainer.train()
    callback._abandoned()  # what the interpreter's exit runs
    run = resolve_run(tmp_path / "runs", "latest")
    assert run.status == "interrupted" and "before on_train_end" in run.status_message
    assert sorted(set(run.table("metrics")["step"])) == [1, 2]
    assert all(not p._post_accumulate_grad_hooks for p in model.parameters())  # hooks removed
