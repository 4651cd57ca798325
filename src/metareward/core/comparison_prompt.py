"""The pairwise judge's prompt: two responses to one instruction, shown as "Response A" and "Response B", and a final
line naming the better one, `Winner: A` or `Winner: B`.

Used only when the actor's responses are ranked pairwise (`judge/ranking=pairwise`, `engine.ranking`). The template
is a parameter of that ranking (conf/judge/ranking/pairwise.yaml), since nothing else asks for comparisons; its
final line's word is the judge prompt's `winner_label` (the meta-judge's line), so both A-versus-B verdicts are
parsed, cued and rewritten the same way. The wording is our own; comparing both orders of every pair follows the
pairwise LLM-as-a-judge setting of Zheng et al. 2023 (arXiv 2306.05685, Sec. 3.1 and 3.3).
"""

from __future__ import annotations

import string

from metareward.core.parsing import parse_winner

COMPARISON_FIELDS = ("instruction", "response_a", "response_b", "winner_label")
# The two responses' letters: the choices read after the `Winner:` cue, and what the parser returns.
COMPARISON_CHOICES = ("A", "B")

COMPARISON_TEMPLATE = (
    "Two assistants answered the same question. Decide which answer serves the user better: more helpful, more "
    "accurate and clearer. Judge what each answer says, not its length or whether it is shown first.\n\n"
    "Question:\n{instruction}\n\n"
    "Response A:\n{response_a}\n\n"
    "Response B:\n{response_b}\n\n"
    "Compare the two in 80 words or fewer. "
    'End with exactly one line: "{winner_label}: A" or "{winner_label}: B".'
)


def render_comparison(template: str, instruction: str, response_a: str, response_b: str, winner_label: str) -> str:
    """The user message comparing `response_a` (shown first) with `response_b`; fields are stripped, as the judge
    prompt's are, so the layout does not depend on how a generation ended."""
    return template.format(
        instruction=instruction.strip(),
        response_a=response_a.strip(),
        response_b=response_b.strip(),
        winner_label=winner_label,
    )


def comparison_template_problems(template: object, winner_label: str = "Winner") -> list[str]:
    """Why `template` cannot ask for a comparison, one sentence each naming `template`: not text, not a template,
    a field missing or unknown, or a rendering that already reads as a verdict (a judge that repeats the prompt back
    must not be counted as deciding)."""
    if not isinstance(template, str):
        return [f"template={template!r} is not text"]
    try:
        fields = {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}
    except ValueError as error:
        return [f"template is not a template ({error}); write a literal brace as {{{{ or }}}}"]
    shown = ", ".join(f"{{{name}}}" for name in COMPARISON_FIELDS)
    if set(COMPARISON_FIELDS) - fields or fields - set(COMPARISON_FIELDS):
        return [f"template must show exactly the fields {shown}, found {sorted(fields)} (a literal brace is doubled)"]
    if parse_winner(render_comparison(template, "", "", "", winner_label), label=winner_label) is not None:
        return [f"template reads as a verdict itself; name both lines, as in '{winner_label}: A' or '... B'"]
    return []
