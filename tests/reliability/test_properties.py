"""Searching for inputs that break the contract, instead of listing them: generated config overrides and data files,
bad and good. The contract: the preflight (what train.py runs before Hydra creates the run directory) either
accepts the run, and then the typed settings build, or returns problems that are each one non-empty line; it never
raises, and it never creates the run directory. Small example budgets here (seconds); `-m slow` runs a larger one.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from helpers import compose
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metareward.config.build import GROUPS, RunSettings, build_settings
from metareward.evaluation.evaluators import BackendEvaluator, OpenAIChatEvaluator
from metareward.generation.spec import GenerationSpec
from metareward.run.preflight import preflight_problems
from metareward.schema.rules import Listed, Number, rules_of

# Derandomized: CI explores the same examples on every run, so a failure reproduces; change the budget or the
# strategies to explore others.
QUIET = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow], "database": None, "derandomize": True}
FAST = settings(max_examples=25, **QUIET)
LARGE = settings(max_examples=300, **QUIET)

CHOICE_KEYS = [
    # The components (conf/dpo/loss, optimizer, lr_schedule) are nodes; their class path is the choice here.
    "dpo.loss._target_",
    "dpo.optimizer._target_",
    "dpo.lr_schedule._target_",
    "judge.score_mode",
    "meta_judge.verdict_mode",
    "pairs.strategy",
    "pairs.unfinished",
    # The evaluator (conf/evaluation/evaluator/) is a node too.
    "evaluation.evaluator._target_",
    "data.on_bad_line",
    "model.adapters.mode",
    # Lightning's own (conf/trainer/): what it refuses is found by building a Trainer in the preflight.
    "trainer.precision",
    "trainer.accelerator",
    "trainer.devices",
    "generation.backend",
    "generation.while_training",
    "generation.dtype",
]
# Every number and schedule, read off the rules beside the settings' fields (the evaluators' own included).
RULES = [
    *rules_of(RunSettings),
    *(rule for cls, prefix in GROUPS.values() for rule in rules_of(cls, prefix)),
    *rules_of(OpenAIChatEvaluator, "evaluation.evaluator"),
    *rules_of(BackendEvaluator, "evaluation.evaluator"),
    *rules_of(GenerationSpec, "generation"),
]
KEYS = sorted({key for key, rule in RULES if isinstance(rule, (Number, Listed))}) + CHOICE_KEYS
# Override values as Hydra reads them from a command line.
VALUES = st.one_of(
    st.integers(-3, 5).map(str),
    st.integers(-(10**9), 10**9).map(str),
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(lambda x: repr(float(x))),
    st.sampled_from(
        [
            "two",
            "''",
            "null",
            "true",
            "[]",
            "[1,2,3]",
            "[0.1,0.9]",
            "[a]",
            "dpo",
            "ipo",
            "hybrid",
            "parse",
            "seed",
            "openai",
            "skip",
            "length_controlled",
            "split",
            "cosine",
            "metareward.core.losses.IPOLoss",
            "metareward.training.optim.CosineSchedule",
            "torch.optim.SGD",
            "{a: 1}",
            "bf16-true",
            "32-true",
            "auto",
            "cpu",
            "gpu",
            "vllm",
            "stop",
            "bfloat16",
        ]
    ),
)
OVERRIDES = st.lists(st.tuples(st.sampled_from(KEYS), VALUES), max_size=5, unique_by=lambda kv: kv[0])


def check_contract(*overrides: str) -> list[str]:
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = Path(scratch) / "run"
        cfg = compose("+experiment=smoke", *overrides, output_dir=run_dir)
        problems = preflight_problems(cfg)
        assert not run_dir.exists(), "the preflight created the run directory"
    assert all(isinstance(p, str) and p.strip() and "\n" not in p for p in problems), problems
    assert all("Traceback" not in p for p in problems)
    if not problems:
        build_settings(cfg)  # accepted: the typed settings build
    return problems


def overrides_of(pairs: list[tuple[str, str]]) -> list[str]:
    # The evaluator's keys are those of the selected evaluator, the generation keys those of the backend: one the
    # default (seed evaluator, hf backend) lacks is added (++).
    added = ("evaluation.evaluator.", "generation.")
    return [f"{'++' if key.startswith(added) else ''}{key}={value}" for key, value in pairs]


@FAST
@given(OVERRIDES)
def test_generated_config_overrides_are_accepted_or_refused_one_line_each(pairs: list[tuple[str, str]]) -> None:
    check_contract(*overrides_of(pairs))


@pytest.mark.slow
@LARGE
@given(OVERRIDES)
def test_generated_config_overrides_larger_budget(pairs: list[tuple[str, str]]) -> None:
    check_contract(*overrides_of(pairs))


GOOD_ROW = {
    "id": "x",
    "instruction": "Say hi.",
    "output": "Hi!",
    "response": "Hi!",
    "judgment": "Fine. Score: 4",
    "score": 4,
    "good": "Hi!",
    "poor": "No.",
    "good_score": 5,
    "poor_score": 1,
}
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
# A line of a data file: a good row, a good row with one field replaced, any JSON, any text, any bytes, a blank.
LINES = st.one_of(
    st.just(json.dumps(GOOD_ROW).encode()),
    st.tuples(st.sampled_from(sorted(GOOD_ROW)), JSON_VALUES).map(
        lambda kv: json.dumps({**GOOD_ROW, kv[0]: kv[1], "id": f"{kv[0]}-{kv[1]!r}"}).encode()
    ),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    st.text(max_size=40).map(lambda t: t.encode("utf-8", errors="surrogatepass")),
    st.binary(max_size=40),
    st.just(b""),
)
FILES = st.tuples(st.lists(LINES, max_size=6), st.sampled_from([b"\n", b"\r\n"]), st.booleans())
DATA_KEYS = {
    "prompts": lambda p: [f"data.path={p}", "data.prompts_per_iteration=1"],
    "eval_prompts": lambda p: [f"evaluation.data_path={p}", "evaluation.reference_field=output"],
    "judge_pairs": lambda p: [f"evaluation.judge_quality.data_path={p}"],
    "ift": lambda p: ["warm_start.enabled=true", f"warm_start.ift_path={p}"],
    "eft": lambda p: ["warm_start.enabled=true", f"warm_start.eft_path={p}"],
}


def file_contract(kind: str, lines: list[bytes], newline: bytes, bom: bool) -> list[str]:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "data.jsonl"
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + newline.join(lines) + newline)
        return check_contract(*DATA_KEYS[kind](path))


@FAST
@given(st.sampled_from(sorted(DATA_KEYS)), FILES)
def test_generated_data_files_are_accepted_or_refused_one_line_each(kind: str, file: tuple) -> None:
    file_contract(kind, *file)


@FAST
@given(
    st.sampled_from(sorted(DATA_KEYS)),
    st.integers(1, 4),
    st.sampled_from([b"\n", b"\r\n"]),
    st.booleans(),
    st.integers(0, 3),
)
def test_good_files_in_any_editor_form_are_accepted(kind: str, rows: int, newline: bytes, bom: bool, blanks: int):
    lines = [json.dumps({**GOOD_ROW, "id": f"r{i}"}).encode() for i in range(rows)]
    lines = [b""] * blanks + lines + [b"  "] * blanks
    assert file_contract(kind, lines, newline, bom) == []


@pytest.mark.slow
@LARGE
@given(st.sampled_from(sorted(DATA_KEYS)), FILES)
def test_generated_data_files_larger_budget(kind: str, file: tuple) -> None:
    file_contract(kind, *file)


@pytest.mark.parametrize("key", ["warm_start.epochs", "warm_start.batch_size", "warm_start.max_prompt_tokens"])
def test_an_infinite_integer_is_refused_in_one_line(key: str) -> None:
    # Found by the larger budget: int(inf) raised OverflowError out of the warm start's settings.
    assert check_contract(f"{key}=inf")
