"""Settings our rules used to pass and a library refused only later (Lightning when the Trainer is built, after the
model loaded; the loop at its first step) or accepted quietly while they broke the loop. Each is now one line before
any model loads: ours name the key, and what Lightning itself refuses is found by building a Trainer first."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import compose

from metareward.model import loading
from metareward.run.preflight import preflight_problems

REFUSED = [
    # Lightning accepted these when the Trainer was built; the run then failed or went wrong later.
    ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches=0 must be >= 1"),
    ("trainer.accumulate_grad_batches=two", "trainer.accumulate_grad_batches='two' is not a whole number"),
    ("trainer.log_every_n_steps=0", "trainer.log_every_n_steps=0 must be >= 1"),
    ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val=-1.0 must be >= 0"),
    ("trainer.num_nodes=0", "trainer.num_nodes=0 must be >= 1"),
    ("+trainer.deterministic=maybe", "trainer.deterministic='maybe' is not one of"),
    ("+trainer.max_steps=5", "trainer.max_steps=5 breaks the loop (a step limit ends the run inside an iteration"),
    ("+trainer.limit_train_batches=0.5", "trainer.limit_train_batches=0.5 breaks the loop (every pair"),
    ("+trainer.overfit_batches=1", "trainer.overfit_batches=1 breaks the loop"),
    ("+trainer.fast_dev_run=true", "trainer.fast_dev_run=True breaks the loop"),
    ("trainer.reload_dataloaders_every_n_epochs=2", "each iteration makes its pairs when its epoch starts"),
    ("trainer.use_distributed_sampler=true", "the DataModule shares the batches out over the ranks itself"),
    ("+trainer.max_time=00:00:00:01", "trainer.max_time='00:00:00:01' breaks the loop (it ends the run inside an"),
    # Lightning's default DDP stopped at the first step (unused parameters) in a traceback from every process.
    ("trainer.devices=2", "trainer.devices=2 with trainer.strategy=auto runs Lightning's default DDP, which stops"),
    # Lightning refused these only when the run built its Trainer, after the model had loaded, in a traceback.
    ("trainer.devices=0", "trainer: Lightning refuses these settings: `Trainer(devices=0)`"),
    ("trainer.devices=two", "trainer: Lightning refuses these settings: `devices` selected with"),
    ("trainer.precision=33", "trainer: Lightning refuses these settings: Precision 33 is invalid"),
    ("trainer.accelerator=nonsense", "trainer: Lightning refuses these settings: You selected an invalid accelerator"),
    ("+trainer.strategy=nonsense", "trainer: Lightning refuses these settings:"),
    ("+trainer.gradient_clip_algorithm=sideways", "trainer: Lightning refuses these settings: `gradient_clip_algor"),
    ("+trainer.profiler=loud", "trainer: Lightning refuses these settings:"),
    ("+trainer.max_epoch=3", "unexpected keyword argument 'max_epoch'"),
    # transformers refused these when the model loaded (flash_attention_3 in an ImportError traceback).
    ("model.attn_implementation=nonsense", "model.attn_implementation='nonsense' is not an attention transformers kno"),
    ("model.attn_implementation=flash_attention_3", "model.attn_implementation=flash_attention_3 needs a CUDA GPU"),
    # true or false only: a word used to be read as true (bool('no') is True).
    ("model.gradient_checkpointing=no_thanks", "model.gradient_checkpointing='no_thanks' is not true or false"),
    ("model.trust_remote_code=1", "model.trust_remote_code=1 is not true or false"),
    ("dpo.reset_optimizer_each_iteration=sometimes", "dpo.reset_optimizer_each_iteration='sometimes' is not true"),
    ("actor.drop_duplicates=maybe", "actor.drop_duplicates='maybe' is not true or false"),
    ("warm_start.enabled=on_monday", "warm_start.enabled='on_monday' is not true or false"),
]


@pytest.mark.parametrize(("override", "phrase"), REFUSED, ids=[o for o, _ in REFUSED])
def test_a_setting_a_library_refused_late_is_one_line_before_the_model_loads(
    override: str, phrase: str, tmp_path: Path
) -> None:
    problems = preflight_problems(compose("+experiment=smoke", override, output_dir=tmp_path / "run"))
    assert len(problems) == 1 and phrase in problems[0] and "\n" not in problems[0], problems


@pytest.mark.parametrize(
    "override",
    [
        "trainer.precision=bf16-true",
        "trainer.precision=bf16-mixed",
        "trainer.gradient_clip_val=null",
        "trainer.gradient_clip_val=0",
        "+trainer.gradient_clip_algorithm=value",
        "+trainer.deterministic=true",
        "trainer=ddp trainer.devices=2",
        "+trainer.limit_train_batches=1.0",
        "trainer=ddp",
        "model.attn_implementation=eager",
        "model.attn_implementation=sdpa",
        "model.attn_implementation=kernels-community/flash-attn3",
    ],
)
def test_settings_lightning_accepts_pass_and_leave_the_process_as_it_was(override: str, tmp_path: Path) -> None:
    deterministic = torch.are_deterministic_algorithms_enabled()
    assert preflight_problems(compose("+experiment=smoke", *override.split(), output_dir=tmp_path / "run")) == []
    assert torch.are_deterministic_algorithms_enabled() == deterministic  # building a Trainer sets it


def test_an_attention_package_missing_at_load_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(*args, **kwargs):
        raise ImportError("FlashAttention3 has been toggled on, but it cannot be used: the package is not installed.")

    monkeypatch.setattr(loading.AutoModelForCausalLM, "from_pretrained", missing)
    spec = loading.ModelSpec("builtin:smollm2-135m-instruct", attn_implementation="flash_attention_3")
    with pytest.raises(loading.ModelLoadError, match="could not load model.path=.*: FlashAttention3 has been toggled"):
        loading.load_model_and_tokenizer(spec)
