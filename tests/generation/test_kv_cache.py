"""RoomyCache: the same keys, values and logits as transformers' DynamicCache, written in place. SharedPrompt:
a decoding step over prompts held in shared parts attends as over one copy per row."""

import pytest
import torch
from transformers.cache_utils import DynamicCache

from metareward.generation.kv_cache import PromptPart, RoomyCache, SharedPrompt
from metareward.model.attention import attend_after_shared_prompt
from metareward.model.compat import with_cache
from metareward.model.tiny import build_tiny


def steps(model, cache, prompt, feeds):
    """Last-position logits of the prompt, then of each fed column, through `cache`; rows 1 and 2 swap after the
    second step (as the sampler's row selection does)."""
    out = [model(input_ids=prompt, use_cache=True, **with_cache(cache)).logits[:, -1]]
    for step, column in enumerate(feeds.T):
        if step == 2:
            cache.batch_select_indices(torch.tensor([0, 2, 1]))
            feeds[[1, 2]] = feeds[[2, 1]]
        out.append(model(input_ids=column.unsqueeze(-1), use_cache=True, **with_cache(cache)).logits[:, -1])
    return out


def test_roomy_cache_decodes_as_the_dynamic_cache_and_grows_past_its_room():
    model, _ = build_tiny()
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(3, model.config.vocab_size, (3, 7), generator=generator)
    feeds = torch.randint(3, model.config.vocab_size, (3, 6), generator=generator)
    with torch.inference_mode():
        want = steps(model, DynamicCache(), prompt, feeds.clone())
        roomy = RoomyCache(room=2)  # six steps into room for two: the buffers grow twice
        got = steps(model, roomy, prompt, feeds.clone())
    for expected, actual in zip(want, got):
        assert torch.equal(expected, actual)
    layer = roomy.layers[0]
    assert roomy.get_seq_length() == 13 and layer.keys.shape[-2] == 13 and layer._keys.shape[-2] >= 13
    assert layer.keys.data_ptr() == layer._keys.data_ptr()  # a view of the buffer, not a copy
    roomy.crop(-3)
    assert roomy.get_seq_length() == 10 and layer.values.shape[-2] == 10


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_over_shared_parts_equals_attention_over_each_rows_whole_context(dtype):
    # Five rows, three key/value heads of three query heads each: a part all rows read (a prefix), a part read by
    # groups of rows with left padding (one row reads none of it), and each row's own keys.
    generator = torch.Generator().manual_seed(0)
    rows, heads, dim = 5, 3, 16

    def draw(*shape):
        return torch.randn(*shape, generator=generator).to(dtype)

    prefix_k, prefix_v = draw(1, heads, 6, dim), draw(1, heads, 6, dim)
    group_k, group_v = draw(2, heads, 4, dim), draw(2, heads, 4, dim)
    group_real = torch.tensor([[False, True, True, True], [False, False, True, True]])
    group_owner = torch.tensor([1, 0, -1, 1, 0])
    own_k, own_v = draw(rows, heads, 3, dim), draw(rows, heads, 3, dim)
    query = draw(rows, heads * 3, 1, dim)
    additive = torch.zeros(2, 1, 1, 4, dtype=dtype).masked_fill(~group_real[:, None, None, :], float("-inf"))
    shared = SharedPrompt(
        [
            PromptPart(
                [prefix_k], [prefix_v], torch.zeros(1, 1, 1, 6, dtype=dtype), torch.zeros(rows, dtype=torch.long)
            ),
            PromptPart([group_k], [group_v], additive, group_owner),
        ]
    )
    got = attend_after_shared_prompt(0, query, own_k, own_v, None, None, shared)
    for row in range(rows):
        owner = int(group_owner[row])
        keys = [prefix_k[0]] + ([group_k[owner][:, group_real[owner]]] if owner >= 0 else []) + [own_k[row]]
        values = [prefix_v[0]] + ([group_v[owner][:, group_real[owner]]] if owner >= 0 else []) + [own_v[row]]
        packed = query[row].reshape(heads, 3, dim)
        want = torch.nn.functional.scaled_dot_product_attention(
            packed.float(), torch.cat(keys, dim=1).float(), torch.cat(values, dim=1).float()
        )
        tolerance = 1e-5 if dtype == torch.float32 else 2e-2
        torch.testing.assert_close(got[row].float(), want, atol=tolerance, rtol=tolerance)
    fewer = shared.selected(torch.tensor([4, 1]))
    torch.testing.assert_close(
        attend_after_shared_prompt(0, query[[4, 1]], own_k[[4, 1]], own_v[[4, 1]], None, None, fewer), got[[4, 1]]
    )
