"""ROUGE-L between two texts: an F-measure over the longest common subsequence of their word tokens.

For a candidate c and a reference r with token counts |c| and |r| and longest common subsequence LCS(c, r)
(Lin 2004, "ROUGE: A Package for Automatic Evaluation of Summaries", Sec. 3.1):
    P = LCS / |c|,   R = LCS / |r|,   F = 2 P R / (P + R)   (0 when LCS = 0).
Tokens are lowercased runs of ASCII letters and digits, as in the widely used `rouge-score` package without a
stemmer, so both give the same numbers on the same texts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

_NON_WORD = re.compile(r"[^a-z0-9]+")


def rouge_tokens(text: str) -> list[str]:
    """Lowercased word tokens: anything but a-z and 0-9 separates words."""
    return _NON_WORD.sub(" ", text.lower()).split()


def lcs_length(first: Sequence[str], second: Sequence[str]) -> int:
    """Length of the longest common subsequence, by dynamic programming over one row: O(|a| |b|) time."""
    if len(first) < len(second):
        first, second = second, first
    previous = [0] * (len(second) + 1)
    for token in first:
        current = [0]
        for j, other in enumerate(second):
            current.append(previous[j] + 1 if token == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l_tokens(candidate: Sequence[str], reference: Sequence[str]) -> float:
    """ROUGE-L F-measure of two token lists (see the module docstring); 0 when either is empty."""
    if not candidate or not reference:
        return 0.0
    common = lcs_length(candidate, reference)
    if common == 0:
        return 0.0
    precision, recall = common / len(candidate), common / len(reference)
    return 2 * precision * recall / (precision + recall)


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F-measure of two texts."""
    return rouge_l_tokens(rouge_tokens(candidate), rouge_tokens(reference))


def max_rouge_l(candidate: str, references: Iterable[Sequence[str]]) -> float:
    """Highest ROUGE-L of `candidate` against any already tokenized reference (0 for none)."""
    tokens = rouge_tokens(candidate)
    return max((rouge_l_tokens(tokens, reference) for reference in references), default=0.0)
