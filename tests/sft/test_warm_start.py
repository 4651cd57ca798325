"""SFT warm start: the loss falls on a fixed batch, only the intended adapter moves, base weights never do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from metareward.model.adapters import AdapterSpec, RoleAdapters
from metareward.sft.collate import SFTCollator
from metareward.sft.formatting import SFTExample
from metareward.sft.train import SFTOptim, masked_nll, train_adapter
from metareward.sft.warm_start import WarmStartSettings, start_from_warm_m0, warm_start, warm_start_settings

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = [
    SFTExample("Say hi.", "Hi there!", "ift"),
    SFTExample("Count to three.", "1, 2, 3.", "ift"),
    SFTExample("Name a colour.", "Blue.", "ift"),
    SFTExample("Opposite of up?", "Down.", "ift"),
]


def _tiny_adapters(mode: str = "split") -> tuple[RoleAdapters, object]:
    from metareward.model.tiny import build_tiny

    torch.manual_seed(0)
    model, tokenizer = build_tiny()
    return RoleAdapters(model, AdapterSpec(mode=mode, r=4, alpha=8)), tokenizer


def _snapshot(adapters: RoleAdapters) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in adapters.model.named_parameters()}


def _changed(before: dict[str, torch.Tensor], adapters: RoleAdapters) -> set[str]:
    return {name for name, p in adapters.model.named_parameters() if not torch.equal(before[name], p.detach())}


def test_loss_falls_and_only_the_actor_adapter_moves() -> None:
    adapters, tokenizer = _tiny_adapters()
    collator = SFTCollator(tokenizer)
    before = _snapshot(adapters)
    stats = train_adapter(adapters, "actor", EXAMPLES, collator, SFTOptim(epochs=5, lr=3e-3, batch_size=4))
    assert stats["steps"] == 5 and stats["examples"] == 4
    assert stats["last_loss"] < stats["first_loss"] - 0.05  # one fixed batch, five steps
    changed = _changed(before, adapters)
    assert changed and all("lora_" in name and ".actor." in name for name in changed)
    assert adapters.model.active_adapter == "actor"
    with torch.no_grad(), adapters.role("actor"):
        after = masked_nll(adapters.model, collator(EXAMPLES))
    assert float(after) < stats["first_loss"]


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_warm_start_split_and_shared(tmp_path: Path) -> None:
    ift = _write(tmp_path / "ift.jsonl", [{"instruction": e.prompt, "response": e.completion} for e in EXAMPLES])
    eft = _write(
        tmp_path / "eft.jsonl",
        [
            {
                "instruction": "Say hi.",
                "response": "Hi!",
                "score": 3,
                "judgment": "Friendly and on topic but minimal.\nScore: 3",
            }
        ],
    )
    section = {
        "enabled": True,
        "ift_path": ift,
        "eft_path": eft,
        "max_steps": 1,
        "lr": 1e-3,
        "max_prompt_tokens": 2048,
        "max_completion_tokens": 32,
    }
    settings = warm_start_settings(section, seed=1)
    adapters, tokenizer = _tiny_adapters("split")
    before = _snapshot(adapters)
    stats = warm_start(adapters, tokenizer, settings)
    assert set(stats["adapters"]) == {"actor", "judge"}
    assert stats["adapters"]["actor"]["examples"] == 4 and stats["adapters"]["judge"]["examples"] == 1
    assert stats["data"]["eft"] == {"examples": 1, "drops": {}}
    changed = _changed(before, adapters)
    assert any(".actor." in n for n in changed) and any(".judge." in n for n in changed)
    assert all("lora_" in n for n in changed)

    adapters, tokenizer = _tiny_adapters("shared")
    stats = warm_start(adapters, tokenizer, settings)
    assert set(stats["adapters"]) == {"policy"} and stats["adapters"]["policy"]["examples"] == 5

    # The EFT prompt (the judge prompt with its rubric) does not fit 64 tokens: dropped and counted, never cut.
    adapters, tokenizer = _tiny_adapters("split")
    stats = warm_start(adapters, tokenizer, warm_start_settings({**section, "max_prompt_tokens": 64}, seed=1))
    assert stats["data"]["eft"] == {"examples": 0, "drops": {"prompt_too_long": 1}}
    assert set(stats["adapters"]) == {"actor"}


def test_m0_is_saved_after_the_warm_start_and_loaded_instead_of_trained_again(tmp_path: Path) -> None:
    ift = _write(tmp_path / "ift.jsonl", [{"instruction": e.prompt, "response": e.completion} for e in EXAMPLES])
    settings = warm_start_settings({"enabled": True, "ift_path": ift, "epochs": 2, "lr": 1e-2}, seed=1)
    folder = tmp_path / "checkpoints" / "iter_00"
    adapters, tokenizer = _tiny_adapters()
    stats = start_from_warm_m0(adapters, tokenizer, settings, folder)
    assert stats["adapters"]["actor"]["steps"] == 2
    assert (folder / "actor" / "adapter_model.safetensors").is_file() and (folder / "judge").is_dir()
    warm = _snapshot(adapters)
    assert adapters.seed_tensors is not None
    assert all(torch.equal(t, warm[n]) for n, t in adapters.seed_tensors.items())  # M0 frozen as trained

    again, _ = _tiny_adapters()  # a resumed run: fresh adapters, M0 on disk
    assert start_from_warm_m0(again, tokenizer, settings, folder) == {}  # loaded, not trained
    assert not _changed(warm, again)
    assert again.seed_tensors is not None and set(again.seed_tensors) == set(adapters.seed_tensors)

    # A worker process of a multi-process run trains alike and leaves the writing to rank 0.
    elsewhere = tmp_path / "worker" / "iter_00"
    start_from_warm_m0(_tiny_adapters()[0], tokenizer, settings, elsewhere, write=False)
    assert not elsewhere.exists()


def test_disabled_and_invalid_settings() -> None:
    assert warm_start(None, None, WarmStartSettings()) == {}  # type: ignore[arg-type]
    assert warm_start_settings(None) == WarmStartSettings()
    assert WarmStartSettings(enabled=True).problems()
    with pytest.raises(ValueError, match="warm_start.lr"):
        bad = warm_start_settings({"enabled": True, "ift_path": "x.jsonl", "lr": 0})
        warm_start(None, None, bad)  # type: ignore[arg-type]


def test_config_group_composes() -> None:
    from helpers import compose

    cfg = compose("warm_start=eft")
    settings = warm_start_settings(cfg.warm_start, seed=int(cfg.seed))
    assert settings.enabled and settings.optim.epochs == 2
    assert Path(settings.ift_path).is_file() and Path(settings.eft_path).is_file()
    assert not warm_start_settings(compose().warm_start).enabled


@pytest.mark.slow
def test_warm_start_on_embedded_default(embedded_checkpoint: Path) -> None:
    from metareward.model.loading import ModelSpec, load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(ModelSpec(path="builtin:smollm2-135m-instruct"))
    adapters = RoleAdapters(model, AdapterSpec())
    before = _snapshot(adapters)
    settings = WarmStartSettings(
        enabled=True,
        ift_path=str(REPO / "data/ift/sample.jsonl"),
        eft_path=str(REPO / "data/eft/sample.jsonl"),
        optim=SFTOptim(lr=2e-4, batch_size=1, max_steps=2),
        max_prompt_tokens=320,
        max_completion_tokens=64,
    )
    stats = warm_start(adapters, tokenizer, settings)
    for name in ("actor", "judge"):
        assert stats["adapters"][name]["steps"] == 2
        assert 0 < stats["adapters"][name]["first_loss"] < 10
    changed = _changed(before, adapters)
    assert changed and all("lora_" in n for n in changed)


def test_the_warm_start_computes_the_adapters_as_the_dpo_step_does() -> None:
    from peft.tuners.lora import LoraLayer

    from metareward.model.tiny import build_tiny

    torch.manual_seed(0)
    model, tokenizer = build_tiny()
    adapters = RoleAdapters(model.to(torch.bfloat16), AdapterSpec(mode="split", r=4, alpha=8))
    lora = next(m for m in adapters.model.modules() if isinstance(m, LoraLayer))
    seen: list[torch.dtype] = []
    lora.lora_A["actor"].register_forward_hook(lambda _, inputs, out: seen.append(inputs[0].dtype))
    stats = train_adapter(adapters, "actor", EXAMPLES, SFTCollator(tokenizer), SFTOptim(epochs=5, lr=3e-3))
    assert seen and set(seen) == {torch.bfloat16}  # compute_dtype=weights: bfloat16 from float32 masters
    assert all(p.dtype == torch.float32 for p in adapters.adapter_parameters())
    assert stats["last_loss"] < stats["first_loss"] - 0.05
