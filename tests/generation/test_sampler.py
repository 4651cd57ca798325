"""Our KV-cached sampler: agreement with transformers' greedy generate, per-request reproducibility, eos handling."""

import itertools

import pytest
import torch
from torch import nn

from metareward.generation import sampler
from metareward.generation.sampler import (
    Generation,
    GenerationRequest,
    SamplingSettings,
    common_prefix_length,
    generate,
    prefill,
    prefix_groups,
    sample_next_tokens,
)
from metareward.model.attention import PACKED_SDPA, SHARED_PROMPT
from metareward.model.chat import encode_text, render_prompt
from metareward.model.embedded import embedded_checkpoint_dir, is_converted
from metareward.model.tiny import build_tiny

MESSAGES = (
    "Hi",
    "Score: 4",
    "Explain the reasoning step by step, please.",
    "Write a short answer to the question, then explain why the judgment applies the rubric.",
    "Which winner? Tell me now.",
)
GREEDY = SamplingSettings(temperature=0.0, top_p=1.0, max_new_tokens=24)
SAMPLED = SamplingSettings(temperature=1.0, top_p=0.9, max_new_tokens=24)


def sharpen(model: nn.Module, seed: int = 0) -> nn.Module:
    """Re-draw the weight matrices with a large spread: the stock init (std 0.02) makes greedy decoding repeat
    one token forever, which would let many bugs pass unnoticed."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.3, generator=generator)
    return model


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = build_tiny()
    return sharpen(model), tokenizer


def requests_for(tokenizer, seeds=None):
    seeds = seeds or range(len(MESSAGES))
    return [GenerationRequest(f"q{i}", render_prompt(tokenizer, m), s) for i, (m, s) in enumerate(zip(MESSAGES, seeds))]


def test_settings_validation_names_every_problem():
    with pytest.raises(ValueError, match="temperature.*top_p.*max_new_tokens"):
        SamplingSettings(temperature=-1.0, top_p=0.0, max_new_tokens=0)
    with pytest.raises(ValueError, match="top_p"):
        SamplingSettings(temperature=1.0, top_p=1.5, max_new_tokens=8)


def test_greedy_matches_transformers_generate(tiny):
    model, tokenizer = tiny
    requests = requests_for(tokenizer)
    ours = generate(model, tokenizer, requests, GREEDY, batch_size=len(requests), progress=False)
    prompts = [r.prompt for r in requests]
    batch = tokenizer(prompts, add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt")
    reference = model.generate(**batch, do_sample=False, max_new_tokens=GREEDY.max_new_tokens)
    assert len({len(encode_text(tokenizer, p)) for p in prompts}) == len(prompts)  # really different lengths
    for row, result in zip(reference[:, batch.input_ids.shape[1] :].tolist(), ours):
        expected = row[: row.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in row else row
        assert result.text == tokenizer.decode(expected, skip_special_tokens=True)
        assert result.num_tokens == len(expected)
    assert len({r.text for r in ours}) > 1


def test_results_keep_request_order_and_do_not_depend_on_batching(tiny):
    model, tokenizer = tiny
    requests = requests_for(tokenizer)
    for settings in (GREEDY, SAMPLED):
        whole = generate(model, tokenizer, requests, settings, batch_size=len(requests), progress=False)
        assert [g.key for g in whole] == [r.key for r in requests]
        for batch_size in (1, 2):
            again = generate(model, tokenizer, requests[::-1], settings, batch_size=batch_size, progress=False)
            assert again[::-1] == whole


def test_sampling_follows_the_seed(tiny):
    model, tokenizer = tiny
    first = generate(model, tokenizer, requests_for(tokenizer, seeds=[7] * 5), SAMPLED, progress=False)
    rerun = generate(model, tokenizer, requests_for(tokenizer, seeds=[7] * 5), SAMPLED, progress=False)
    other = generate(model, tokenizer, requests_for(tokenizer, seeds=[8] * 5), SAMPLED, progress=False)
    assert first == rerun
    assert all(a.text != b.text for a, b in zip(first, other))
    greedy = generate(model, tokenizer, requests_for(tokenizer), GREEDY, progress=False)
    assert [g.text for g in first] != [g.text for g in greedy]


def test_tiny_top_p_is_greedy(tiny):
    model, tokenizer = tiny
    nucleus = SamplingSettings(temperature=1.0, top_p=1e-6, max_new_tokens=GREEDY.max_new_tokens)
    assert generate(model, tokenizer, requests_for(tokenizer), nucleus, progress=False) == generate(
        model, tokenizer, requests_for(tokenizer), GREEDY, progress=False
    )


def test_nucleus_keeps_the_smallest_prefix_reaching_top_p():
    # p = (0.5, 0.3, 0.2), top_p = 0.6: the mass before token 1 is 0.5 < 0.6 (kept), before token 2 it is 0.8.
    logits = torch.tensor([[0.5, 0.3, 0.2]]).log()
    settings = SamplingSettings(temperature=1.0, top_p=0.6, max_new_tokens=1)
    generator = torch.Generator().manual_seed(0)
    draws = torch.cat([sample_next_tokens(logits, settings, [generator]) for _ in range(4000)])
    counts = torch.bincount(draws, minlength=3).tolist()
    assert counts[2] == 0
    assert counts[0] / 4000 == pytest.approx(0.5 / 0.8, abs=0.03)


def test_rows_that_share_a_prefix_are_encoded_in_parts_and_decode_as_alone(tiny):
    # Three questions quoted by three answers each (the meta-judge's comparisons of one response, say) and two
    # prompts of their own: the header and rubric are encoded once, each question once, then each answer.
    model, tokenizer = tiny
    questions = (
        "Explain the reasoning step by step, please, then the answer.",
        "Which winner? Tell me now and say why, in full.",
        "Hi",
    )
    texts = [f"{q} Judgment: {a}" for q in questions[:2] for a in ("Score: 4", "Winner: Judgment A", "B")]
    texts = [
        f"Use the rubric: relevant, helpful, brief. {text}"
        for text in [*texts, questions[2], "Write a short answer to the question."]
    ]
    requests = [GenerationRequest(f"q{i}", render_prompt(tokenizer, t), i) for i, t in enumerate(texts)]
    rows = [encode_text(tokenizer, r.prompt) for r in requests]
    shared = common_prefix_length(rows)
    group_of, lengths = prefix_groups([row[shared:] for row in rows], 16)
    assert [group_of[:3], group_of[3:6]] == [[group_of[0]] * 3, [group_of[3]] * 3] and group_of[0] != group_of[3]
    rest = [row[shared:] for row in rows]
    for group, length in enumerate(lengths):
        members = [row for row, g in zip(rest, group_of) if g == group]
        assert length == (common_prefix_length(members) if len(members) > 1 else 0)
    assert sorted(lengths)[:2] == [0, 0] and min(lengths[group_of[0]], lengths[group_of[3]]) >= 16
    ours = generate(model, tokenizer, requests, GREEDY, batch_size=len(requests), progress=False)
    for request, result in zip(requests, ours):
        alone = generate(model, tokenizer, [request], GREEDY, progress=False)[0]
        assert result.text == alone.text
    calls = []
    hook = model.register_forward_pre_hook(lambda _, args, kw: calls.append(len(kw["input_ids"])), with_kwargs=True)
    logits = prefill(model, rows, tokenizer.pad_token_id)[0]
    hook.remove()
    assert calls == [1, len(lengths), len(rows)]  # the header, the groups' prefixes, every row's own tokens
    for row, row_logits in zip(rows, logits):
        torch.testing.assert_close(row_logits, model(input_ids=torch.tensor([row])).logits[0, -1], atol=1e-4, rtol=1e-4)


def sort_everything(logits: torch.Tensor, settings: SamplingSettings, generators) -> torch.Tensor:
    """The nucleus draw as its docstring defines it, over a stable sort of the whole vocabulary."""
    probs = torch.softmax(logits.float() / settings.temperature, dim=-1)
    sorted_probs, order = probs.sort(dim=-1, descending=True, stable=True)
    sorted_probs = sorted_probs.masked_fill(sorted_probs.cumsum(dim=-1) - sorted_probs >= settings.top_p, 0.0)
    cdf = sorted_probs.cumsum(dim=-1)
    uniforms = torch.stack([torch.rand((), generator=g) for g in generators])
    last = (sorted_probs > 0).sum(dim=-1, keepdim=True) - 1
    return order.gather(-1, torch.searchsorted(cdf, (uniforms * cdf[:, -1]).unsqueeze(-1), right=True).minimum(last))[
        :, 0
    ]


def test_the_draw_from_the_top_candidates_is_the_full_sorts_draw():
    # Rows of bf16 logits (many exact ties) from peaked to flat, plus rows built for each path: five tokens tied on
    # top (tie order by token id, from the candidates), a uniform row and 300 tokens tied on top (the whole
    # vocabulary sorted: the nucleus runs past the candidates, or the cut falls inside a tie).
    generator = torch.Generator().manual_seed(0)
    spreads = torch.tensor([1.0, 3.0, 8.0, 20.0]).repeat_interleave(8).unsqueeze(-1)
    logits = (torch.randn(32, 49152, generator=generator) * spreads).bfloat16()
    five, uniform, wide = torch.full((3, 49152), -20.0).bfloat16()
    five[[3, 90, 4000, 7, 31000]] = 5.0
    uniform[:] = 0.0
    wide[1000:1300] = 5.0
    logits = torch.cat([logits, torch.stack([five, uniform, wide])])
    for top_p in (0.3, 0.9, 0.95, 1.0):
        settings = SamplingSettings(temperature=0.8, top_p=top_p, max_new_tokens=1)
        for seed in range(3):
            ours = sample_next_tokens(logits, settings, [torch.Generator().manual_seed(seed + i) for i in range(35)])
            want = sort_everything(logits, settings, [torch.Generator().manual_seed(seed + i) for i in range(35)])
            assert torch.equal(ours, want)


class StopAtPosition(nn.Module):
    """Wraps a model (as PEFT does) and forces eos once a row's position reaches `stop`; records batch sizes."""

    def __init__(self, model: nn.Module, eos_id: int, stop: int):
        super().__init__()
        self.model, self.eos_id, self.stop, self.batch_sizes = model, eos_id, stop, []

    def forward(self, position_ids, **kwargs):
        self.batch_sizes.append(position_ids.shape[0])
        out = self.model(position_ids=position_ids, **kwargs)
        out.logits[position_ids[:, -1] >= self.stop, -1, self.eos_id] = 1e4
        return out


def test_finished_rows_leave_the_batch_and_the_loop_ends(tiny):
    model, tokenizer = tiny
    requests = requests_for(tokenizer)
    lengths = [len(encode_text(tokenizer, r.prompt)) for r in requests]
    stop = max(lengths) + 5
    wrapped = StopAtPosition(model, tokenizer.eos_token_id, stop)
    settings = SamplingSettings(temperature=0.0, top_p=1.0, max_new_tokens=200)
    results = generate(wrapped, tokenizer, requests, settings, batch_size=len(requests), progress=False)
    # A prompt of length L samples token k at position L - 1 + k, so eos comes as token stop + 1 - L.
    assert [r.num_tokens for r in results] == [stop + 1 - n for n in lengths]
    assert all(r.finished for r in results)
    assert len(wrapped.batch_sizes) == stop + 2 - min(lengths)
    assert wrapped.batch_sizes[-1] == 1 and wrapped.batch_sizes == sorted(wrapped.batch_sizes, reverse=True)
    assert generate(wrapped, tokenizer, requests, settings, batch_size=1, progress=False) == results
    unfinished = generate(model, tokenizer, requests[:1], GREEDY, progress=False)[0]
    assert not unfinished.finished and unfinished.num_tokens == GREEDY.max_new_tokens


def test_finished_rows_leave_a_large_batch_a_quarter_at_a_time_and_decode_as_alone(tiny):
    model, tokenizer = tiny
    messages = [f"{'Tell me more, please. ' * (i % 6)}Question {i}?" for i in range(12)]
    requests = [GenerationRequest(f"q{i}", render_prompt(tokenizer, m), i) for i, m in enumerate(messages)]
    lengths = [len(encode_text(tokenizer, r.prompt)) for r in requests]
    stop = max(lengths) + 3  # the rows end one length group at a time, the shortest prompts last
    wrapped = StopAtPosition(model, tokenizer.eos_token_id, stop)
    settings = SamplingSettings(temperature=1.0, top_p=0.9, max_new_tokens=200)
    results = generate(wrapped, tokenizer, requests, settings, batch_size=12, progress=False)
    sizes = wrapped.batch_sizes[1:]  # after the prefill
    drops = [(before, before - after) for before, after in itertools.pairwise(sizes) if after < before]
    ending_steps = len({r.num_tokens for r in results})  # steps at which a row ended (at eos or at the stop)
    assert sizes[0] == 12 and 0 < len(drops) < ending_steps - 1  # fewer copies than steps that end rows
    assert all(dropped >= before // 4 for before, dropped in drops)
    alone = [generate(wrapped, tokenizer, [r], settings, progress=False)[0] for r in requests]
    assert [r.text for r in alone] == [r.text for r in results]


def test_judge_like_batches_decode_over_shared_prompts_as_each_request_alone(monkeypatch):
    monkeypatch.setattr(
        sampler, "SHARING_SAVES", 0
    )  # the tiny prompts save fewer key positions than the embedded model's
    model, tokenizer = build_tiny()
    sharpen(model).set_attn_implementation(PACKED_SDPA)
    rubric = "Use the rubric: relevant, helpful, brief, and then explain the score in detail please. "
    questions = ("Why is the sky blue today, tell me?", "Name three colours now.")
    texts = [f"{rubric}{q} Answer: {a}" for q in questions for a in ("Blue light scatters.", "Red, green and blue.")]
    requests = [
        GenerationRequest(f"q{i}.{j}", render_prompt(tokenizer, text), 10 * i + j)
        for i, text in enumerate(texts)
        for j in range(3)  # three judgments of each prompt, as the judge asks
    ]
    shared_steps = []
    model.register_forward_pre_hook(lambda _, args, kw: shared_steps.append(SHARED_PROMPT in kw), with_kwargs=True)
    settings = SamplingSettings(temperature=1.0, top_p=0.9, max_new_tokens=20)
    together = generate(model, tokenizer, requests, settings, batch_size=len(requests), progress=False)
    assert sum(shared_steps) == len(shared_steps) - 3  # every decoding step; not the prefill's three passes
    alone = [generate(model, tokenizer, [request], settings, progress=False)[0] for request in requests]
    assert [result.text for result in together] == [result.text for result in alone]


def test_long_prompts_are_refused_never_cut(tiny):
    model, tokenizer = tiny
    requests = requests_for(tokenizer)
    lengths = [len(encode_text(tokenizer, r.prompt)) for r in requests]
    limit = sorted(lengths)[2]
    with pytest.raises(ValueError, match=r"2 of 5 prompts are longer than"):
        generate(model, tokenizer, requests, GREEDY, max_prompt_tokens=limit, progress=False)
    fitting = [r for r, n in zip(requests, lengths) if n <= limit]
    assert len(generate(model, tokenizer, fitting, GREEDY, max_prompt_tokens=limit, progress=False)) == 3


def test_training_flag_is_restored_and_bad_input_is_refused(tiny):
    model, tokenizer = tiny
    model.train()
    try:
        generate(model, tokenizer, requests_for(tokenizer)[:1], GREEDY, progress=False)
        assert model.training
    finally:
        model.eval()
    assert generate(model, tokenizer, [], GREEDY, progress=False) == []
    with pytest.raises(ValueError, match="empty prompt"):
        generate(model, tokenizer, [GenerationRequest("x", "", 0)], GREEDY, progress=False)


def test_peft_wrapped_model_generates_like_the_base():
    peft = pytest.importorskip("peft")
    model, tokenizer = build_tiny()
    sharpen(model)
    requests = requests_for(tokenizer)
    base = generate(model, tokenizer, requests, GREEDY, progress=False)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    wrapped = peft.get_peft_model(model, config)  # LoRA B starts at zero: same function as the base
    assert generate(wrapped, tokenizer, requests, GREEDY, progress=False) == base


@pytest.mark.slow
def test_greedy_matches_transformers_on_smollm2():
    directory = embedded_checkpoint_dir()
    if not is_converted(directory):
        pytest.skip(f"no converted SmolLM2 checkpoint in {directory}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(directory).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    messages = ["What is the capital of France?", "Name three colours.", "Write a haiku about autumn leaves."]
    requests = [GenerationRequest(i, render_prompt(tokenizer, m), i) for i, m in enumerate(messages)]
    settings = SamplingSettings(temperature=0.0, top_p=1.0, max_new_tokens=20)
    ours = generate(model, tokenizer, requests, settings, batch_size=3, progress=False)
    batch = tokenizer(
        [r.prompt for r in requests], add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt"
    )
    reference = model.generate(**batch, do_sample=False, max_new_tokens=20)
    for row, result in zip(reference[:, batch.input_ids.shape[1] :].tolist(), ours):
        expected = row[: row.index(tokenizer.eos_token_id)] if tokenizer.eos_token_id in row else row
        assert result.text == tokenizer.decode(expected, skip_special_tokens=True)
        assert isinstance(result, Generation) and result.num_tokens == len(expected)


def test_prompts_are_shared_where_that_saves_many_key_positions():
    def stretch(start, end, holders):
        return sampler.Stretch(start, end, torch.zeros(1, dtype=torch.long), list(range(holders)))

    judge = [stretch(0, 181, 1), stretch(181, 380, 16)]  # the rubric, then 16 prompts read by 3 judgments each
    assert sampler._sharing_pays(48, 380, judge)
    actor = [stretch(0, 20, 1), stretch(20, 60, 8)]  # 8 short prompts, 4 answers each: too few positions saved
    assert not sampler._sharing_pays(32, 60, actor)
    distinct = [stretch(0, 181, 1), stretch(181, 400, 48)]  # every row its own prompt after the rubric
    assert not sampler._sharing_pays(48, 400, distinct)
