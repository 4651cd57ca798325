"""Sharded strategies: the FSDP wrap policy, batches that train one adapter per step on all ranks, adapters saved
from gathered tensors, and `full_weights`, which lets ranks generate different numbers of tokens under FSDP without
collectives.

For the last, two CPU processes over gloo run plain torch FSDP (FULL_SHARD, the wrap policy of conf/trainer/fsdp.yaml)
around the tiny model with LoRA adapters: a bfloat16 base and float32 adapters, as on a GPU. This file is also the
script each rank runs (`python test_strategies.py RANK WORLD OUT`, with MASTER_ADDR and MASTER_PORT set).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from metareward.lightning.datamodule import SingleKindBatches
from metareward.lightning.strategies import decoder_layer_policy, is_fsdp_unit
from metareward.model.adapters import plain_name

PROMPT = [[5, 6, 7, 8, 9, 10, 11]]


def test_the_policy_wraps_decoder_layers_and_trainable_leaves() -> None:
    from torch.distributed.fsdp.wrap import CustomPolicy

    from metareward.model.adapters import AdapterSpec, RoleAdapters
    from metareward.model.full_weights import FullWeights
    from metareward.model.tiny import build_tiny

    adapters = RoleAdapters(build_tiny()[0], AdapterSpec(r=4, alpha=8))
    assert isinstance(decoder_layer_policy(["LlamaDecoderLayer"]), CustomPolicy)
    names = frozenset(["LlamaDecoderLayer"])
    chosen = [name for name, module in adapters.model.named_modules() if is_fsdp_unit(module, names)]
    layers = [name for name in chosen if name.endswith(("layers.0", "layers.1"))]
    assert len(layers) == 2
    # 2 layers x 4 projections x (A, B) x 2 adapters, and nothing frozen besides the layers
    assert len([name for name in chosen if ".lora_" in name]) == 32 and len(chosen) == 34
    full = FullWeights(build_tiny()[0]).model
    policy = decoder_layer_policy(["LlamaDecoderLayer"])
    units = [name for name, module in full.named_modules() if policy._lambda_fn(module)]  # root first, as FSDP does
    assert units == ["model.layers.0", "model.layers.1"]  # full fine-tuning: the layers only
    wrapped = "base_model._fsdp_wrapped_module.model.layers.0._fsdp_wrapped_module.q.lora_A.actor.weight"
    assert plain_name(wrapped) == "base_model.model.layers.0.q.lora_A.actor.weight"


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_at_every_step_all_ranks_train_the_same_adapter(world_size: int) -> None:
    kinds = ["actor"] * 7 + ["judge"] * 3
    ranks = [list(SingleKindBatches(kinds, 2, 2, seed=5, rank=r, world_size=world_size)) for r in range(world_size)]
    assert len({len(batches) for batches in ranks}) == 1
    for step in zip(*ranks):
        assert len({kinds[i] for batch in step for i in batch}) == 1
    covered = {i for batches in ranks for batch in batches for i in batch}
    assert covered == set(range(len(kinds)))
    if world_size == 1:  # one process: every batch once per pass
        assert sum(len(batch) for batch in ranks[0]) == 2 * len(kinds)


def test_saved_adapters_load_back_with_peft(tmp_path: Path) -> None:
    from peft import PeftModel

    from metareward.model.adapters import AdapterSpec, RoleAdapters
    from metareward.model.tiny import build_tiny

    torch.manual_seed(0)
    adapters = RoleAdapters(build_tiny()[0], AdapterSpec(r=4, alpha=8))
    with torch.no_grad():
        for name, parameter in adapters.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_()
    # names as FSDP gives them, with a wrapper inside the first decoder layer
    named = {n.replace("layers.0.", "layers.0._fsdp_wrapped_module."): p for n, p in adapters.model.named_parameters()}
    adapters.save(tmp_path, {plain_name(n): p.detach() for n, p in named.items() if "lora_" in n})
    loaded = PeftModel.from_pretrained(build_tiny()[0], str(tmp_path / "actor"), adapter_name="actor")
    loaded.load_adapter(str(tmp_path / "judge"), adapter_name="judge")
    expected = {n: p for n, p in adapters.model.named_parameters() if "lora_" in n}
    got = {n: p for n, p in loaded.named_parameters() if "lora_" in n}
    assert got.keys() == expected.keys() and all(torch.equal(got[n], expected[n]) for n in expected)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ranks_generate_different_lengths_inside_full_weights(tmp_path: Path) -> None:
    port, world = _free_port(), 2
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    ranks = [
        subprocess.Popen(
            [sys.executable, __file__, str(rank), str(world), str(tmp_path / f"rank{rank}.json")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(world)
    ]
    outputs = [process.communicate(timeout=300)[0] for process in ranks]
    for process, output in zip(ranks, outputs):
        assert process.returncode == 0, output[-3000:]
    for rank in range(world):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result["new_tokens"] == 6 + 5 * rank  # the ranks made different numbers of forward calls
        assert result["same_as_unwrapped"], result
        assert result["all_gathers_inside"] == 0  # gathered once on entry, nothing per token
        assert result["adapters_match"] and result["sharded_again"]


def _rank_main(rank: int, world: int, out: Path) -> None:
    """One rank: greedy generation inside `full_weights` equals generation on the model before wrapping."""
    import torch.distributed as dist
    from torch.distributed.fsdp import FullyShardedDataParallel
    from torch.distributed.fsdp._flat_param import FlatParamHandle

    from metareward.lightning.strategies import fsdp_full_weights
    from metareward.model.adapters import AdapterSpec, RoleAdapters
    from metareward.model.tiny import build_tiny

    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)  # the same adapters on every rank, as seed_everything makes them in a run
    model, _ = build_tiny()
    adapters = RoleAdapters(model.to(torch.bfloat16), AdapterSpec(r=4, alpha=8))
    with torch.no_grad():
        for name, parameter in adapters.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.2)  # trained-looking adapters, so they take part in the output
    before = {name: p.detach().clone() for name, p in adapters.model.named_parameters() if "lora_" in name}
    ids = torch.tensor(PROMPT)
    settings = {"max_new_tokens": 6 + 5 * rank, "do_sample": False, "min_new_tokens": 6 + 5 * rank}
    with adapters.role("judge") as policy:
        expected = policy.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **settings)
    root = FullyShardedDataParallel(
        torch.nn.ModuleDict({"policy": adapters.model}),
        auto_wrap_policy=decoder_layer_policy(["LlamaDecoderLayer"]),
        use_orig_params=True,
        device_id=torch.device("cpu"),
    )
    gathers = {"count": 0}
    original = FlatParamHandle._all_gather_flat_param

    def counted(self, *args, **kwargs):
        gathers["count"] += 1
        return original(self, *args, **kwargs)

    with fsdp_full_weights(root):
        FlatParamHandle._all_gather_flat_param = counted
        with torch.no_grad(), adapters.role("judge") as policy:
            made = policy.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **settings)
        gathered = {plain_name(n): p.detach().clone() for n, p in adapters.model.named_parameters() if "lora_" in n}
        FlatParamHandle._all_gather_flat_param = original
    layer = next(p for n, p in adapters.model.named_parameters() if "layers.0" in n and "lora_" not in n)
    result = {
        "new_tokens": made.shape[1] - ids.shape[1],
        "same_as_unwrapped": torch.equal(made, expected),
        "all_gathers_inside": gathers["count"],
        "adapters_match": gathered.keys() == before.keys() and all(torch.equal(gathered[k], before[k]) for k in before),
        "sharded_again": layer.dim() == 1,
    }
    out.write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    _rank_main(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
