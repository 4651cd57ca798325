"""Cleaning and filtering generated prompts, counting every drop by reason.

The filters follow Self-Instruct (Wang et al. 2023, arXiv 2212.10560, Sec. 2.2), as the Self-Rewarding paper
does for its new prompts (Yuan et al. 2024, arXiv 2401.10020, Sec. 3.1). They run in this order and the first
that fails names the drop:
- `empty`: nothing usable was left after cleaning;
- `too_short` / `too_long`: fewer than `min_words` or more than `max_words` words (a very long prompt is
  usually the model running on into an answer);
- `unprintable`: holds control or other non-printable characters (broken decoding);
- `keyword`: contains a word the model cannot act on (images, files, ...), matched as a whole word;
- `bad_start`: does not begin with a letter or digit (leftover list markers, code, punctuation);
- `duplicate`: the same text, ignoring case, spacing and punctuation, as an existing or already kept prompt;
- `similar`: ROUGE-L F >= `max_rouge_l` against an existing or already kept prompt.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from metareward.selfinstruct.rouge import max_rouge_l, rouge_tokens

# Requests a text-only assistant cannot satisfy; whole words, case-insensitive.
DEFAULT_BANNED_KEYWORDS = (
    "image",
    "images",
    "picture",
    "pictures",
    "photo",
    "photos",
    "graph",
    "chart",
    "diagram",
    "draw",
    "video",
    "audio",
    "file",
    "files",
    "attached",
    "attachment",
    "link",
    "url",
)
DROP_REASONS = ("empty", "too_short", "too_long", "unprintable", "keyword", "bad_start", "duplicate", "similar")

_LEADING_MARKER = re.compile(r"^\s*(?:task\s*\d*\s*[:.)-]|\d+\s*[:.)-]|[-*\u2022]\s+)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class FilterSettings:
    max_rouge_l: float = 0.7
    min_words: int = 3
    max_words: int = 60
    banned_keywords: tuple[str, ...] = DEFAULT_BANNED_KEYWORDS

    def problems(self) -> list[str]:
        found = []
        if not 0.0 < self.max_rouge_l <= 1.0:
            found.append(f"max_rouge_l={self.max_rouge_l} must be in (0, 1]")
        if self.min_words < 1 or self.max_words < self.min_words:
            found.append(f"need 1 <= min_words <= max_words, got {self.min_words} and {self.max_words}")
        return found


@dataclass
class FilterResult:
    kept: list[str]
    drops: dict[str, int] = field(default_factory=dict)


def clean_candidate(text: str) -> str:
    """The first non-empty line of a generation, without list markers (`Task 9:`, `3.`, `-`) or wrapping quotes."""
    for line in text.splitlines():
        line = _LEADING_MARKER.sub("", line.strip()).strip().strip("\"'\u201c\u201d").strip()
        if line:
            return line
    return ""


def normalize(text: str) -> str:
    """The key two prompts share when they differ only in case, spacing or punctuation."""
    return " ".join(rouge_tokens(text))


def drop_reason(text: str, settings: FilterSettings) -> str | None:
    """The first failing check among the non-pool checks (empty ... bad_start); None if all pass."""
    words = text.split()
    if not words:
        return "empty"
    if len(words) < settings.min_words:
        return "too_short"
    if len(words) > settings.max_words:
        return "too_long"
    if not text.isprintable():
        return "unprintable"
    banned = set(settings.banned_keywords)
    if banned and any(token in banned for token in rouge_tokens(text)):
        return "keyword"
    if not text[0].isalnum():
        return "bad_start"
    return None


def filter_candidates(candidates: Sequence[str], existing: Sequence[str], settings: FilterSettings) -> FilterResult:
    """Keep the cleaned candidates that pass every filter; each kept one joins the set later ones are compared to.

    Returns the kept texts in input order and a count for every reason in `DROP_REASONS` (zeros included).
    """
    drops: Counter[str] = Counter({reason: 0 for reason in DROP_REASONS})
    seen = {normalize(text) for text in existing}
    references = [rouge_tokens(text) for text in existing]
    kept: list[str] = []
    for raw in candidates:
        text = clean_candidate(raw)
        reason = drop_reason(text, settings)
        if reason is None and normalize(text) in seen:
            reason = "duplicate"
        if reason is None and max_rouge_l(text, references) >= settings.max_rouge_l:
            reason = "similar"
        if reason is not None:
            drops[reason] += 1
            continue
        kept.append(text)
        seen.add(normalize(text))
        references.append(rouge_tokens(text))
    return FilterResult(kept=kept, drops=dict(drops))
