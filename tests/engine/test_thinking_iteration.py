"""A thinking model through one data-making iteration (a scripted backend over a tokenizer whose template thinks):
the judge and the meta-judge see answers only, scores are read from the judge's answer and never its reasoning,
the length control compares answers, the reasoning is stored beside each answer and trained with it, and an
answer cut off in its reasoning is dropped and counted."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from chat_tokenizers import thinking_like
from helpers import compose

from metareward.config.build import build_settings
from metareward.engine.iteration import make_iteration_data
from metareward.engine.prompt_pool import load_prompt_pool
from metareward.generation.choice_probs import cue_read
from metareward.generation.sampler import Generation
from metareward.model.chat import encode_text, reasoning_format, turn_end_ids
from metareward.storage.records import PairRecord
from metareward.storage.run_layout import iteration_dir
from metareward.training.collate import PairCollator

# Per response index: (reasoning, answer, the judge's score of it). Index 0 has the shortest answer and the longest
# reasoning; index 4 is cut off before it closes its reasoning.
ANSWERS = [
    (
        "<think>\nThe primes below ten are 2, 3, 5 and 7; the smallest is 2, and it is the only even one.\n</think>\n\n",
        "Two.",
        5,
    ),
    ("<think>\nTwo.\n</think>\n\n", "Two, the smallest prime number, as everyone learns at school.", 5),
    ("<think>\nNine?\n</think>\n\n", "Nine.", 1),
    ("<think>\nOdd.\n</think>\n\n", "Nine is a prime, surely, since it looks odd to me.", 1),
    ("<think>\nStill counting the primes one by one", "", None),
]
JUDGE_REASONING = "<think>\nMy first guess: Score: 0\n</think>\n\n"
META_REASONING = "<think>\nWinner: Judgment B\n</think>\n\n"


class ThinkingBackend:
    """Writes the scripted texts above for each role, keeping every rendered prompt it was asked."""

    def __init__(self, tokenizer):
        self.tokenizer, self.max_prompt_tokens = tokenizer, 1_000_000
        self.form = reasoning_format(tokenizer)
        self.asked: dict[str, list[str]] = {}

    def _written(self, role: str, key, prompt: str) -> tuple[str, bool]:
        if role == "actor":
            reasoning, answer, _ = ANSWERS[key[1]]
            return reasoning + answer, bool(answer)
        if role == "judge":
            score = next(s for _, answer, s in ANSWERS if answer and f"\n{answer}\n" in prompt)
            view = len([p for p in self.asked["judge"] if p == prompt]) - 1  # the j-th judgment of this response
            return f"{JUDGE_REASONING}Correct enough (view {view}).\nScore: {max(score - (view == 2), 0)}", True
        views = re.findall(r"\(view (\d)\)", prompt)  # the meta-judge prefers the lower view, wherever it is shown
        return f"{META_REASONING}Winner: Judgment {'A' if views[0] < views[1] else 'B'}", True

    def generate(self, role, requests, settings, desc, cue=None, max_prompt_tokens=None):
        made = []
        for request in requests:
            self.asked.setdefault(role, []).append(request.prompt)
            written, finished = self._written(role, request.key, request.prompt)
            made.append(Generation.decoded(request.key, written, len(written), finished, None, self.form))
        return made

    def choose(self, role, contexts, choices, batch_size, desc, max_prompt_tokens=None):
        return np.full((len(contexts), len(choices)), 1 / len(choices))

    def cue_read(self, cue_text, choices):
        return cue_read(self.tokenizer, cue_text, choices)

    def release(self) -> None: ...

    def close(self) -> None: ...


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_thinking_model_is_judged_on_its_answers_and_trained_on_what_it_wrote(tmp_path: Path) -> None:
    pool_file = tmp_path / "prompts.jsonl"
    pool_file.write_text(json.dumps({"id": "p0", "instruction": "Name the smallest prime."}) + "\n")
    cfg = compose(
        "+experiment=smoke",
        f"data.path={pool_file}",
        "data.prompts_per_iteration=1",
        "actor.num_responses=5",
        "judge.score_mode=parse",
        "meta_judge.verdict_mode=parse",
        "pairs.unfinished=drop",
    )
    settings = build_settings(cfg).engine
    tokenizer = thinking_like()
    backend = ThinkingBackend(tokenizer)
    data = make_iteration_data(backend, settings, load_prompt_pool(str(pool_file)), 1, tmp_path)
    out = iteration_dir(tmp_path, 1)

    responses = lines(out / "responses.jsonl")
    assert [(r["index"], r["text"], r["reasoning"]) for r in responses] == [
        (k, answer, reasoning) for k, (reasoning, answer, _) in enumerate(ANSWERS[:4])
    ]
    assert data.stats["actor/dropped/no_answer_after_reasoning"] == 1  # index 4, cut in its reasoning
    for prompt in backend.asked["judge"] + backend.asked["meta_judge"]:
        assert "<think>" not in prompt.split("<|im_start|>user\n", 1)[1]  # what a judge is shown holds no reasoning
        assert "My first guess" not in prompt and "Still counting" not in prompt

    judgments = lines(out / "judgments.jsonl")
    assert {j["score"] for j in judgments} == {5.0, 4.0, 1.0, 0.0} and all(
        j["score_source"] == "parsed" for j in judgments
    )
    assert all(j["reasoning"] == JUDGE_REASONING and "<think>" not in j["text"] for j in judgments)
    assert all(m["reasoning"] == META_REASONING for m in lines(out / "meta_judgments.jsonl"))

    actor = next(p for p in data.pairs if p.kind == "actor")
    assert (actor.chosen, actor.rejected) == ("Two.", ANSWERS[3][1])  # the shortest answer, not the shortest text
    assert (actor.chosen_reasoning, actor.rejected_reasoning) == (ANSWERS[0][0], ANSWERS[3][0])
    judge = next(p for p in data.pairs if p.kind == "judge")
    assert judge.chosen_reasoning == judge.rejected_reasoning == JUDGE_REASONING
    assert "<think>" not in judge.prompt and "<think>" not in judge.chosen

    stored = [PairRecord(**p) for p in lines(out / "pairs.jsonl")]
    assert stored == list(data.pairs)
    batch = PairCollator(tokenizer)([actor])
    chosen_ids = batch["input_ids"][0][batch["completion_mask"][0].bool()].tolist()
    assert chosen_ids == encode_text(tokenizer, ANSWERS[0][0] + "Two.") + list(turn_end_ids(tokenizer))
