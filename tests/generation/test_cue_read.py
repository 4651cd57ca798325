"""Reading a choice after each generation (CueRead) against a plain forward pass over prompt + text + cue."""

import pytest
import torch
from torch import nn

from metareward.generation.choice_probs import cue_read
from metareward.generation.sampler import CueRead, GenerationRequest, SamplingSettings, generate
from metareward.model.chat import encode_text, render_prompt
from metareward.model.tiny import build_tiny

MESSAGES = ("Hi", "Rate this answer.", "Explain the rubric, then give a score out of five.", "Which one wins?")
CHOICES = ("0", "1", "2", "3", "4", "5")


class EosAfter(nn.Module):
    """Forces eos once a row's last position reaches `stop` (so rows end at different steps)."""

    def __init__(self, model: nn.Module, eos_id: int, stop: int):
        super().__init__()
        self.model, self.eos_id, self.stop = model, eos_id, stop

    def forward(self, position_ids, **kwargs):
        out = self.model(position_ids=position_ids, **kwargs)
        out.logits[position_ids[:, -1] == self.stop, -1, self.eos_id] = 1e4
        return out


@pytest.fixture(scope="module")
def tiny():
    model, tokenizer = build_tiny()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.normal_(0.0, 0.3, generator=generator)
    return model.eval(), tokenizer


def plain_greedy_then_read(model, prompt: list[int], eos_id: int, max_new: int, cue: CueRead) -> list[float]:
    """Greedy decoding without a cache, one forward per token, then the cue: an independent reference."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(max_new):
            token = int(
                model(input_ids=torch.tensor([ids]), position_ids=torch.arange(len(ids))[None]).logits[0, -1].argmax()
            )
            if token == eos_id:
                break
            ids.append(token)
        ids += list(cue.cue_ids)
        logits = model(input_ids=torch.tensor([ids]), position_ids=torch.arange(len(ids))[None]).logits[0, -1]
    return torch.log_softmax(logits.float(), -1)[list(cue.choice_ids)].tolist()


def test_reads_match_a_forward_over_the_generated_text_and_the_cue(tiny):
    model, tokenizer = tiny
    cue = cue_read(tokenizer, "Score: ", CHOICES)
    requests = [GenerationRequest(i, render_prompt(tokenizer, m), i) for i, m in enumerate(MESSAGES)]
    prompts = [encode_text(tokenizer, r.prompt) for r in requests]
    stop = sorted(len(p) for p in prompts)[1] + 3  # some rows meet eos, the longer ones hit max_new_tokens first
    wrapped = EosAfter(model, tokenizer.eos_token_id, stop)
    settings = SamplingSettings(temperature=0.0, top_p=1.0, max_new_tokens=6)
    results = generate(wrapped, tokenizer, requests, settings, batch_size=len(requests), progress=False, cue=cue)
    assert {r.finished for r in results} == {True, False}
    for result, prompt in zip(results, prompts):
        expected = plain_greedy_then_read(wrapped, prompt, tokenizer.eos_token_id, 6, cue)
        assert result.choice_logprobs == pytest.approx(expected, abs=1e-4)


def test_a_cue_changes_nothing_about_the_sampled_text(tiny):
    model, tokenizer = tiny
    requests = [GenerationRequest(i, render_prompt(tokenizer, m), 10 + i) for i, m in enumerate(MESSAGES)]
    settings = SamplingSettings(temperature=1.0, top_p=0.9, max_new_tokens=12)
    plain = generate(model, tokenizer, requests, settings, batch_size=3, progress=False)
    cued = generate(
        model,
        tokenizer,
        requests,
        settings,
        batch_size=3,
        progress=False,
        cue=cue_read(tokenizer, "Winner: Judgment ", ("A", "B")),
    )
    assert [(g.text, g.num_tokens, g.finished) for g in cued] == [(g.text, g.num_tokens, g.finished) for g in plain]
    assert all(g.choice_logprobs is None for g in plain) and all(len(g.choice_logprobs) == 2 for g in cued)


def test_an_empty_cue_is_refused():
    with pytest.raises(ValueError, match="cue token"):
        CueRead((), (1,))
