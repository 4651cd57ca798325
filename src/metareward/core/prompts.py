"""The judge prompt: the judge's and meta-judge's templates, the final lines they ask for and the score scale, as
one typed object, `JudgePrompt`, selected by name in the config (`judge/prompt=<name>`, a YAML file in
conf/judge/prompt/ whose `_target_` builds it). Everything that renders a judge prompt, parses a judgment, appends a
cue or strips a final line is given the object, so a prompt sweep changes all of them together.

The default, `ADDITIVE_FIVE_POINT`, follows the papers' structure (Yuan et al. 2024, arXiv 2401.10020, Fig. 2: an
additive 5-point rubric ending in ``Score: <points>``; Wu et al. 2024, arXiv 2407.19594, Sec. 2.2: a meta-judge
comparing two judgments of one response and naming a winner), but the wording is our own and kept short because the
CPU demo model pays for every prompt token. Rendered strings are the *user* message; the chat template is applied
elsewhere.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any, ClassVar

from metareward.core.parsing import parse_score, parse_winner

# The fields a template must show, and those it may use to name its own scale and lines.
JUDGE_FIELDS = ("instruction", "response")
META_JUDGE_FIELDS = ("instruction", "response", "judgment_a", "judgment_b")
SCALE_FIELDS = ("min_score", "max_score", "score_label", "winner_label")
_TEXTS = ("judge_template", "meta_judge_template", "score_label", "winner_label")


class JudgePromptError(ValueError):
    """A judge prompt that cannot be used; `problems` holds one sentence per problem, each naming its field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class JudgePrompt:
    """What the judge and the meta-judge are asked, and how their answers end.

    judge_template: the judge's user message, showing {instruction} and {response}.
    meta_judge_template: the meta-judge's, showing {judgment_a} and {judgment_b} as well.
        Either may also use {min_score}, {max_score}, {score_label} and {winner_label}; a literal brace is doubled.
    min_score, max_score: the integer scale. Its choices, read from next-token probabilities after the cue, are
        every integer from min to max; each must be one token for the model (score_mode parse reads any number).
    score_label: the judge ends with the line "<score_label>: <score>" ("Score: 4"). The parser, the cue and the
        tail cut before a cue all derive from it.
    winner_label: the meta-judge ends with "<winner_label>: Judgment A" or "... B".
    """

    judge_template: str
    meta_judge_template: str
    min_score: int
    max_score: int
    score_label: str
    winner_label: str

    # The meta-judge shows the two judgments as "Judgment A" and "Judgment B"; the winner parser reads these letters.
    winner_choices: ClassVar[tuple[str, str]] = ("A", "B")

    def __post_init__(self) -> None:
        found = self.problems()
        if found:
            raise JudgePromptError(found)

    @property
    def score_cue(self) -> str:
        """Appended after a justification to read the score from next-token probabilities ("Score:")."""
        return f"{self.score_label}:"

    @property
    def score_choices(self) -> tuple[str, ...]:
        return tuple(str(score) for score in range(self.min_score, self.max_score + 1))

    @property
    def score_values(self) -> tuple[float, ...]:
        return tuple(float(choice) for choice in self.score_choices)

    @property
    def winner_cue(self) -> str:
        return f"{self.winner_label}: Judgment"

    def score_line(self, score: float) -> str:
        """The judge's final line for `score`: "Score: 4"."""
        return f"{self.score_cue} {score:g}"

    def winner_line(self, choice: str) -> str:
        return f"{self.winner_cue} {choice}"

    def render_judge(self, instruction: str, response: str) -> str:
        """User message asking for a short justification and a final score line.

        Surrounding whitespace of both fields is stripped so the layout does not depend on how a generation ended.
        """
        return self.judge_template.format(
            instruction=instruction.strip(), response=response.strip(), **self._scale_fields()
        )

    def render_meta_judge(self, instruction: str, response: str, judgment_a: str, judgment_b: str) -> str:
        """User message asking which of two judgments applies the scale better, ending with the winner line."""
        return self.meta_judge_template.format(
            instruction=instruction.strip(),
            response=response.strip(),
            judgment_a=judgment_a.strip(),
            judgment_b=judgment_b.strip(),
            **self._scale_fields(),
        )

    def parse_score(self, text: str) -> float | None:
        """The last score line's number when it lies on the scale (see `core.parsing.parse_score`)."""
        return parse_score(text, low=self.min_score, high=self.max_score, label=self.score_label)

    def parse_winner(self, text: str) -> str | None:
        """The winner, "A" or "B", from the last winner line (see `core.parsing.parse_winner`)."""
        return parse_winner(text, label=self.winner_label)

    def _scale_fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SCALE_FIELDS}

    def problems(self) -> list[str]:
        """Every reason the prompt cannot be used, one sentence each, naming the field."""
        found = [
            f"{name}={getattr(self, name)!r} is not text" for name in _TEXTS if not isinstance(getattr(self, name), str)
        ]
        texts = not found
        scale = (self.min_score, self.max_score)
        found += [
            f"{name}={value!r} is not a whole number"
            for name, value in zip(("min_score", "max_score"), scale)
            if not _whole(value)
        ]
        if all(_whole(value) for value in scale) and self.min_score >= self.max_score:
            found.append(f"min_score={self.min_score} must be below max_score={self.max_score}")
        if texts:
            for name in ("score_label", "winner_label"):
                label = getattr(self, name)
                if not label.replace(" ", "").isalpha() or label != " ".join(label.split()):
                    found.append(f"{name}={label!r} must be one or more words of letters, such as 'Score'")
            found += _template_problems("judge_template", self.judge_template, JUDGE_FIELDS)
            found += _template_problems("meta_judge_template", self.meta_judge_template, META_JUDGE_FIELDS)
        # The rendered templates are checked only once everything they are rendered from is sound.
        return found or self._answer_problems()

    def _answer_problems(self) -> list[str]:
        """Each template asks for its final line and does not read as an answer itself (a judge that repeats the
        prompt must not be scored)."""
        found = []
        judge, meta = self.render_judge("", ""), self.render_meta_judge("", "", "", "")
        if self.score_cue.lower() not in judge.lower():
            found.append(f"judge_template never asks for the final '{self.score_cue} <score>' line")
        elif self.parse_score(judge) is not None:
            found.append(f"judge_template reads as a score itself; write the line's form as '{self.score_cue} <score>'")
        if self.winner_cue.lower() not in meta.lower():
            found.append(f"meta_judge_template never asks for the final '{self.winner_cue} A' or '... B' line")
        elif self.parse_winner(meta) is not None:
            found.append(
                "meta_judge_template reads as a verdict itself; name both labels, as in 'Judgment A' or 'Judgment B'"
            )
        return found


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _template_problems(name: str, template: str, required: tuple[str, ...]) -> list[str]:
    try:
        fields = {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
    except ValueError as error:
        return [f"{name} is not a template ({error}); write a literal brace as {{{{ or }}}}"]
    missing = ", ".join(f"{{{field}}}" for field in required if field not in fields)
    unknown = ", ".join(f"{{{field}}}" for field in sorted(fields - {*required, *SCALE_FIELDS}))
    found = [f"{name} does not show {missing}"] if missing else []
    if unknown:
        allowed = ", ".join(f"{{{field}}}" for field in (*required, *SCALE_FIELDS))
        found.append(f"{name} has the unknown field(s) {unknown}; it may use {allowed} (a literal brace is doubled)")
    return found


# The default prompt's texts.
RUBRIC = (
    "Start at 0 and add one point for each statement that holds:\n"
    "1. It is on topic and gives some useful information, even if partial or partly off topic.\n"
    "2. It deals with a large part of the question, though not all of it.\n"
    "3. It answers the core of the question usefully, whether it reads like an assistant or like a web page.\n"
    "4. It is written as an AI assistant would answer, directly and completely: clear, well organised, "
    "helpful, even if it could be slightly better.\n"
    "5. It fits the question perfectly, with no filler, shows expert knowledge and real insight."
)

JUDGE_TEMPLATE = (
    "Rate how well the response answers the user's question, using this additive 5-point scale.\n"
    f"{RUBRIC}\n\n"
    "Question:\n{instruction}\n\n"
    "Response:\n{response}\n\n"
    "Explain your rating in 100 words or fewer. "
    'Then write a final line of the form "Score: <total points>".'
)

META_JUDGE_TEMPLATE = (
    "Two judges rated the same response with this additive 5-point scale.\n"
    f"{RUBRIC}\n\n"
    "Question:\n{instruction}\n\n"
    "Response:\n{response}\n\n"
    "Judgment A:\n{judgment_a}\n\n"
    "Judgment B:\n{judgment_b}\n\n"
    "Which judgment applies the scale more accurately and more consistently? Check the points each one gave "
    "or withheld against the response, and explain briefly. "
    'End with exactly one line: "Winner: Judgment A" or "Winner: Judgment B".'
)


ADDITIVE_FIVE_POINT = JudgePrompt(
    judge_template=JUDGE_TEMPLATE,
    meta_judge_template=META_JUDGE_TEMPLATE,
    min_score=0,
    max_score=5,
    score_label="Score",
    winner_label="Winner",
)


def additive_five_point() -> JudgePrompt:
    """The default prompt (conf/judge/prompt/default.yaml): the additive 5-point rubric above."""
    return ADDITIVE_FIVE_POINT


# The default prompt's parts, for code that runs without a config (tests, benchmarks); the run passes its
# configured `JudgePrompt` instead.
SCORE_CUE = ADDITIVE_FIVE_POINT.score_cue
SCORE_CHOICES = ADDITIVE_FIVE_POINT.score_choices
WINNER_CUE = ADDITIVE_FIVE_POINT.winner_cue
WINNER_CHOICES = ADDITIVE_FIVE_POINT.winner_choices
render_judge_prompt = ADDITIVE_FIVE_POINT.render_judge
render_meta_judge_prompt = ADDITIVE_FIVE_POINT.render_meta_judge
