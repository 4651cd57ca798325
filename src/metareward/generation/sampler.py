"""Batched sampling with a KV cache, reproducible per request.

Each request carries its own seed and owns a `torch.Generator`; a row draws exactly one uniform number per
decoding step from it, so what a request samples does not depend on which requests share its batch, on the
batch size or on the order of requests (up to float noise from left padding, which can flip a draw that sits
on a probability boundary).

A request ends at any of the model's end ids (`stop_ids`, by default `stop_token_ids`: the generation config's
eos ids, the tokenizer's eos and the chat template's end-of-turn token), which are kept out of its text.
Prompts are never cut: one longer than `max_prompt_tokens` is refused, since dropping its head would remove the
chat header and the instruction (callers drop such items and count them; see `engine.phases`).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn
from tqdm import tqdm
from transformers import PreTrainedTokenizerBase

from metareward.generation.kv_cache import PromptPart, RoomyCache, SharedPrompt
from metareward.model.attention import PACKED_SDPA, SHARED_PROMPT, additive_mask
from metareward.model.chat import encode_prompt, reasoning_format, stop_token_ids
from metareward.model.compat import returned_cache, with_cache
from metareward.model.reasoning import ReasoningFormat, split_reasoning
from metareward.schema.rules import COUNT, NON_NEGATIVE, Group, Number, field_problems, setting


@dataclass(frozen=True)
class SamplingSettings:
    """Temperature 0 means greedy decoding (top_p is then ignored). Each role's (and the evaluation's) sampling keys
    are read by these rules; one made in Python is checked by them too."""

    temperature: float = setting("temperature", NON_NEGATIVE)
    top_p: float = setting("top_p", Number(float, 0, 1, low_open=True))
    max_new_tokens: int = setting("max_new_tokens", COUNT)

    def __post_init__(self) -> None:
        problems = field_problems(self)
        if problems:
            raise ValueError("Invalid sampling settings: " + "; ".join(problems) + ".")


@dataclass(frozen=True)
class RoleSettings:
    """How one role samples: its sampling settings (its section's temperature, top_p, max_new_tokens) and its
    generation batch size."""

    sampling: SamplingSettings = setting("", Group(SamplingSettings))
    batch_size: int = setting("batch_size", COUNT)


@dataclass(frozen=True)
class GenerationRequest:
    """`prompt` is already rendered text (chat template applied, maybe followed by a partial answer)."""

    key: Hashable
    prompt: str
    seed: int


@dataclass(frozen=True)
class Generation:
    """`text` is the answer, without the end token, special tokens or a thinking model's reasoning, which is kept in
    `reasoning` (`reasoning + text` is what the model wrote); `num_tokens` counts every generated token, reasoning
    included, without the end token.

    `finished` is True when the model ended its answer with an end id, False when it hit `max_new_tokens`.
    """

    key: Hashable
    text: str
    num_tokens: int
    finished: bool
    choice_logprobs: tuple[float, ...] | None = None  # with a CueRead: log p(choice) after reasoning + text + cue
    reasoning: str = ""

    @classmethod
    def decoded(
        cls,
        key: Hashable,
        written: str,
        num_tokens: int,
        finished: bool,
        choice_logprobs: tuple[float, ...] | None,
        form: ReasoningFormat | None,
    ) -> Generation:
        """The generation of a decoded text, its reasoning (if the model thinks, `form`) split from its answer."""
        reasoning, answer = split_reasoning(written, form)
        return cls(key, answer, num_tokens, finished, choice_logprobs, reasoning)


@contextmanager
def inference_session(model: nn.Module) -> Iterator[None]:
    """Eval mode and `torch.inference_mode()` for the duration; the training flag is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def check_prompt_lengths(rows: Sequence[list[int]], max_prompt_tokens: int, what: str) -> None:
    """Refuse prompts over the limit: callers drop (and count) items whose prompt does not fit, never cut them."""
    too_long = [len(row) for row in rows if len(row) > max_prompt_tokens]
    if too_long:
        raise ValueError(
            f"{what}: {len(too_long)} of {len(rows)} prompts are longer than {max_prompt_tokens} tokens (longest "
            f"{max(too_long)}); drop them before generating or raise the prompt token limit."
        )


def left_pad(
    rows: Sequence[list[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, position_ids) with left padding; positions count real tokens from 0."""
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, width - len(row) :] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return input_ids.to(device), attention_mask.to(device), position_ids.to(device)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (memory problems show up at once)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


# Nucleus sampling looks at each row's most probable tokens first: sorting all 49k probabilities of a row took 2.4 ms
# on 2 cores here, as long as the model's own decoding step per row; the top 256 take a twentieth of that.
NUCLEUS_CANDIDATES = 256


def sample_next_tokens(
    logits: torch.Tensor, settings: SamplingSettings, generators: Sequence[torch.Generator]
) -> torch.Tensor:
    """One token per row from logits [rows, vocab]: greedy, or temperature + nucleus (top_p) sampling.

    Nucleus: sort probabilities p = softmax(logits / T) descending (ties in token-id order) and keep the prefix
    before the first token whose preceding mass reaches top_p (a token is kept when the mass before it is < top_p).
    The kept tokens are sampled by inverse CDF with one uniform u ~ U[0, 1) from the row's own generator: the first
    token whose cumulative kept mass exceeds u * (kept mass).

    The sort is done on the top NUCLEUS_CANDIDATES tokens of a row when its nucleus ends among those strictly more
    probable than the last candidate (then the prefix, its sums and the pick are the full sort's, bit for bit), and on
    the whole vocabulary for the other rows.
    """
    if settings.temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / settings.temperature, dim=-1)
    uniforms = torch.stack([torch.rand((), generator=g, device=logits.device) for g in generators])
    sorted_probs, order = _top_candidates(probs, min(NUCLEUS_CANDIDATES, probs.shape[-1]))
    kept = _nucleus(sorted_probs, settings.top_p)
    above_last = (sorted_probs > sorted_probs[:, -1:]).sum(dim=-1)
    settled = kept.sum(dim=-1) <= above_last  # the nucleus and the token after it are among the candidates
    picks = torch.empty(len(probs), dtype=torch.long, device=probs.device)
    picks[settled] = _pick(sorted_probs[settled], kept[settled], order[settled], uniforms[settled])
    if not bool(settled.all()):
        rest = ~settled
        sorted_probs, order = probs[rest].sort(dim=-1, descending=True, stable=True)
        picks[rest] = _pick(sorted_probs, _nucleus(sorted_probs, settings.top_p), order, uniforms[rest])
    return picks


def _top_candidates(probs: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The `count` most probable tokens of each row in descending probability, ties in token-id order (as a stable
    sort of the whole row orders them; which tied tokens make the cut at the last place is topk's choice)."""
    values, ids = probs.topk(count, dim=-1, sorted=False)
    ids, by_id = ids.sort(dim=-1)
    values, by_value = values.gather(-1, by_id).sort(dim=-1, descending=True, stable=True)
    return values, ids.gather(-1, by_value)


def _nucleus(sorted_probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Which sorted tokens are kept: the prefix before the first one whose preceding mass reaches top_p."""
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    return (mass_before >= top_p).cumsum(dim=-1) == 0


def _pick(sorted_probs: torch.Tensor, kept: torch.Tensor, order: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    kept_probs = sorted_probs.masked_fill(~kept, 0.0)
    cdf = kept_probs.cumsum(dim=-1)
    targets = (uniforms * cdf[:, -1]).unsqueeze(-1)
    last_kept = (kept_probs > 0).sum(dim=-1, keepdim=True) - 1  # guards u * mass rounding up to the mass
    picks = torch.searchsorted(cdf, targets, right=True).minimum(last_kept)
    return order.gather(-1, picks).squeeze(-1)


def common_prefix_length(rows: Sequence[list[int]]) -> int:
    """Tokens every row starts with, leaving each row at least one token of its own."""
    limit = min(len(row) for row in rows) - 1
    first, length = rows[0], 0
    while length < limit and all(row[length] == first[length] for row in rows):
        length += 1
    return length


@dataclass(frozen=True)
class Stretch:
    """Columns [start, end) of a prefilled cache that rows share: `owner[r]`, which of the stretch's own rows row r
    reads (-1: none, its part is empty), `holders[k]`, a row of the cache that holds stretch row k."""

    start: int
    end: int
    owner: torch.Tensor
    holders: list[int]


class Prefill(NamedTuple):
    logits: torch.Tensor  # last-position logits [rows, V]
    cache: Any
    attention_mask: torch.Tensor
    position_ids: torch.Tensor  # of each row's last token
    stretches: list[Stretch]  # the common prefix, the group prefixes, the rows' own tokens (those that exist)


def prefill(
    model: nn.Module,
    rows: Sequence[list[int]],
    pad_id: int,
    use_cache: bool = True,
    min_shared: int = 16,
    room: int = 0,
) -> Prefill:
    """Encode `rows`; returns the last-position logits, the cache, its attention mask, the position ids of the last
    tokens and where the shared parts lie in the cache.

    A row is encoded in up to three parts, each part once for all the rows that hold it, its cache then copied to
    them: the prefix every row starts with (the chat header and the judge rubric), the prefix a group of rows shares
    (the instruction and response that the meta-judge's comparisons of one response all quote), and the row's own
    tokens. Prefixes shorter than `min_shared` tokens are not split off. Within a part the rows are left-padded, so
    padding can sit between the parts (masked out; positions skip it). The cache keeps `room` free positions per
    row for the tokens decoding will add (kv_cache.py).
    """
    device = model_device(model)
    shared = common_prefix_length(rows) if len(rows) > 1 else 0
    shared = shared if shared >= min_shared else 0
    rest = [row[shared:] for row in rows]
    group_of, group_lengths = prefix_groups(rest, min_shared)
    stretches = [Stretch(0, shared, torch.zeros(len(rows), dtype=torch.long, device=device), [0])] if shared else []
    mask = torch.ones((1, shared), dtype=torch.long, device=device)
    cache, offsets = RoomyCache(room), torch.zeros((1, 1), dtype=torch.long, device=device)
    if shared:
        prefix = torch.tensor([rows[0][:shared]], device=device)
        model(input_ids=prefix, use_cache=True, logits_to_keep=1, **with_cache(cache))
    if _splitting_pays(rest, group_of, group_lengths):
        firsts = [group_of.index(group) for group in range(len(group_lengths))]
        parts = [rest[i][:length] for i, length in zip(firsts, group_lengths)]
        cache, mask, offsets = _encode_part(model, parts, cache, mask, pad_id)
        rest = [row[group_lengths[group] :] for row, group in zip(rest, group_of)]
        owner = torch.tensor([g if group_lengths[g] else -1 for g in group_of], device=device)
        stretches.append(Stretch(shared, mask.shape[-1], owner, firsts))
    else:
        group_of = [0] * len(rows)
    owners = torch.tensor(group_of, device=device)
    cache.batch_select_indices(owners)
    mask, offsets = mask[owners], offsets[owners]
    input_ids, suffix_mask, position_ids = left_pad(rest, pad_id, device)
    attention_mask = torch.cat([mask, suffix_mask], dim=-1)
    position_ids = position_ids + offsets + shared
    keep = use_cache or cache.get_seq_length() > 0
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=keep,
        logits_to_keep=1,
        **with_cache(cache if keep else None),
    )
    everyone = list(range(len(rows)))
    stretches.append(Stretch(mask.shape[-1], attention_mask.shape[-1], torch.tensor(everyone, device=device), everyone))
    return Prefill(out.logits[:, -1, :], returned_cache(out), attention_mask, position_ids[:, -1:], stretches)


def _encode_part(
    model: nn.Module, parts: list[list[int]], cache: RoomyCache, mask: torch.Tensor, pad_id: int
) -> tuple[RoomyCache, torch.Tensor, torch.Tensor]:
    """Encode one part per row, left-padded, after the common prefix (`cache`, one row or empty, copied to each;
    `mask`, its real tokens); returns the cache, the mask so far and each row's count of real tokens in its part."""
    device = mask.device
    cache.batch_select_indices(torch.zeros(len(parts), dtype=torch.long, device=device))
    input_ids, part_mask, position_ids = left_pad(parts, pad_id, device)
    mask = torch.cat([mask.expand(len(parts), -1), part_mask], dim=-1)
    model(
        input_ids=input_ids,
        attention_mask=mask,
        position_ids=position_ids + (mask.shape[-1] - part_mask.shape[-1]),
        use_cache=True,
        logits_to_keep=1,
        **with_cache(cache),
    )
    return cache, mask, torch.tensor([[len(part)] for part in parts], device=device)


def _splitting_pays(rows: Sequence[list[int]], group_of: list[int], lengths: list[int]) -> bool:
    """Whether encoding the group prefixes apart costs fewer padded token positions than not: every group (a row that
    shares nothing too) is padded to the longest prefix, and every row to the longest remainder."""
    if not any(lengths):
        return False
    remainders = [len(row) - lengths[group] for row, group in zip(rows, group_of)]
    split = len(lengths) * max(lengths) + len(rows) * max(remainders)
    return split < len(rows) * max(len(row) for row in rows)


def prefix_groups(rows: Sequence[list[int]], min_shared: int) -> tuple[list[int], list[int]]:
    """Rows grouped by a shared prefix of at least `min_shared` tokens: (each row's group, each group's prefix
    length; 0 for a row that shares none). Rows sorted by their tokens sit next to those they share most with."""
    order = sorted(range(len(rows)), key=lambda i: rows[i])
    group_of, lengths, members = [0] * len(rows), [], []
    for i in order:
        if members:
            joined = common_prefix_length([rows[members[-1]], rows[i]])
            joined = joined if len(members) == 1 else min(joined, lengths[-1])
            if joined >= min_shared:
                lengths[-1] = joined
                members.append(i)
                group_of[i] = len(lengths) - 1
                continue
        lengths.append(0)
        members = [i]
        group_of[i] = len(lengths) - 1
    return group_of, lengths


def _prefill_distinct(
    model: nn.Module, prompts: Sequence[list[int]], pad_id: int, room: int
) -> tuple[torch.Tensor, Any, torch.Tensor, torch.Tensor, SharedPrompt | None]:
    """`prefill` over the DISTINCT prompts of a batch, handed to every row: (logits, cache, attention mask, position
    ids, shared prompt).

    Requests that share a prompt (the N judgments of one response, say) differ only in their seeds, so their
    prompt is encoded once. Where the model's attention reads a shared prompt (model/attention.py) and sharing
    saves enough, the prompts stay in their shared parts (`SharedPrompt`) and each row's cache starts empty;
    otherwise the cache is copied out to every row.
    """
    index: dict[tuple[int, ...], int] = {}
    owner = [index.setdefault(tuple(prompt), len(index)) for prompt in prompts]
    logits, cache, attention_mask, position_ids, stretches = prefill(
        model, [list(key) for key in index], pad_id, room=room
    )
    rows = torch.tensor(owner, device=logits.device)
    logits, position_ids = logits[rows], position_ids[rows]
    if _reads_shared_prompts(model) and _sharing_pays(len(prompts), attention_mask.shape[-1], stretches):
        shared = SharedPrompt([_part(cache, attention_mask, stretch, rows, logits.dtype) for stretch in stretches])
        return logits, RoomyCache(room), attention_mask.new_zeros((len(prompts), 0)), position_ids, shared
    if len(index) < len(prompts):
        cache.batch_select_indices(rows)
    return logits, cache, attention_mask[rows], position_ids, None


SHARING_SAVES = 4096  # key positions per layer and step


def _reads_shared_prompts(model: nn.Module) -> bool:
    return getattr(getattr(model, "config", None), "_attn_implementation", None) == PACKED_SDPA


def _sharing_pays(rows: int, columns: int, stretches: list[Stretch]) -> bool:
    """Whether holding the prompts in shared parts reads at most half the key positions that a copy per row does,
    and at least SHARING_SAVES fewer: each part costs a few more operations per layer and step, which the actor's
    short prompts (four answers to one prompt of 60 tokens) do not win back."""
    shared = sum(len(stretch.holders) * (stretch.end - stretch.start) for stretch in stretches)
    return 2 * shared <= rows * columns and rows * columns - shared >= SHARING_SAVES


def _part(cache: Any, mask: torch.Tensor, stretch: Stretch, rows: torch.Tensor, dtype: torch.dtype) -> PromptPart:
    """The stretch's keys and values, one copy per stretch row, and which of them each batch row reads."""
    holders = torch.tensor(stretch.holders, device=mask.device)
    span = slice(stretch.start, stretch.end)
    keys = [layer.keys[:, :, span][holders] for layer in cache.layers]  # only the stretch's columns are copied
    values = [layer.values[:, :, span][holders] for layer in cache.layers]
    additive = additive_mask(mask[:, span][holders] != 0, dtype)
    return PromptPart(keys, values, additive[:, None, None, :], stretch.owner[rows])


@dataclass(frozen=True)
class CueRead:
    """Read a choice after each request ends: feed `cue_ids` (e.g. the tokens of "\nScore: ") on top of what the
    request generated, and keep the log-probabilities of `choice_ids` as the next token (see choice_probs)."""

    cue_ids: tuple[int, ...]
    choice_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.cue_ids or not self.choice_ids:
            raise ValueError("A CueRead needs at least one cue token and one choice token.")


@dataclass
class _Row:
    """Decoding state of one prompt: its tokens so far, then the cue tokens still to feed (None while sampling)."""

    tokens: list[int]
    finished: bool = False
    cue_left: list[int] | None = None
    read: tuple[float, ...] | None = None


def _decode_batch(
    model: nn.Module,
    prompts: Sequence[list[int]],
    generators: Sequence[torch.Generator],
    settings: SamplingSettings,
    stop_ids: frozenset[int],
    pad_id: int,
    cue: CueRead | None = None,
) -> list[_Row]:
    """Decode every prompt; rows leave the batch (and its KV cache) when done, a few at a time: a finished row
    stays in the batch, fed padding and never read, until a quarter of the batch has finished (`_compacting`).

    A row samples until an end id or `max_new_tokens`. With a `cue`, an ended row then stays for len(cue) more
    steps, fed its last token (unless an end id) and the cue tokens instead of samples, and leaves after reading the choice
    log-probs at the cue's end: the read costs a few decoding steps instead of encoding prompt + text again.
    Only sampling rows draw from their generator, so the sampled text does not depend on `cue`.
    """
    room = settings.max_new_tokens + (len(cue.cue_ids) + 1 if cue else 0)  # every token a row can still add
    logits, cache, attention_mask, position_ids, shared = _prefill_distinct(model, prompts, pad_id, room)
    rows = [_Row([]) for _ in prompts]
    active: list[int | None] = list(range(len(prompts)))  # which prompt each batch row holds (None: finished)
    while True:
        feed: list[int] = [pad_id] * len(active)
        leaving: set[int] = set()
        reading = [k for k, i in enumerate(active) if i is not None and rows[i].cue_left == []]
        if reading:
            picked = torch.log_softmax(logits[reading].float(), dim=-1)[:, list(cue.choice_ids)]  # type: ignore[union-attr]
            for k, values in zip(reading, picked.tolist()):
                rows[active[k]].read = tuple(values)
            leaving.update(reading)
        sampling = [k for k, i in enumerate(active) if i is not None and rows[i].cue_left is None]
        if sampling:
            tokens = sample_next_tokens(logits[sampling], settings, [generators[active[k]] for k in sampling])
            for k, token in zip(sampling, tokens.tolist()):
                row = rows[active[k]]
                ended = token in stop_ids
                if not ended:
                    row.tokens.append(token)
                if not ended and len(row.tokens) < settings.max_new_tokens:
                    feed[k] = token
                    continue
                row.finished = ended
                if cue is None:
                    leaving.add(k)
                else:
                    row.cue_left = ([] if row.finished else [token]) + list(cue.cue_ids)
        for k, i in enumerate(active):
            if i is not None and rows[i].cue_left and k not in leaving:
                feed[k] = rows[i].cue_left.pop(0)
        active = [None if k in leaving else i for k, i in enumerate(active)]
        keep = [k for k, i in enumerate(active) if i is not None]
        if not keep:
            return rows
        if _compacting(len(active), len(keep)):
            index = torch.tensor(keep, device=logits.device)
            cache.batch_select_indices(index)
            shared = shared.selected(index) if shared is not None else None
            active, feed = [active[k] for k in keep], [feed[k] for k in keep]
            position_ids, attention_mask = position_ids[index], attention_mask[index]
        position_ids = position_ids + 1
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(active), 1))], dim=-1)
        logits = model(
            input_ids=torch.tensor(feed, device=logits.device).unsqueeze(-1),
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,
            **with_cache(cache),
            **({SHARED_PROMPT: shared} if shared is not None else {}),
            logits_to_keep=1,
        ).logits[:, -1, :]


def _compacting(rows: int, live: int) -> bool:
    """Whether to drop finished rows from the batch now: once they are a quarter of it. Dropping copies every live
    row's KV cache; keeping a finished row costs its share of one step's attention (its logits are not read), so
    rows are dropped in a few copies instead of one copy per step that ends a row."""
    return rows - live >= max(1, rows // 4)


def generate(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    requests: Sequence[GenerationRequest],
    settings: SamplingSettings,
    batch_size: int = 16,
    max_prompt_tokens: int = 1024,
    desc: str = "generate",
    progress: bool = True,
    cue: CueRead | None = None,
    stop_ids: Sequence[int] | None = None,
) -> list[Generation]:
    """Continue every request's prompt; results come back in request order.

    Requests are batched by prompt length (longest first) to limit padding. Generation stops at any of `stop_ids`
    (default: `stop_token_ids` of the tokenizer and the model's generation config). A prompt longer than
    `max_prompt_tokens` is refused (ValueError) before any model work. Works for any causal LM module that
    accepts HF keyword arguments, PEFT-wrapped ones included.
    """
    if not (COUNT.holds(batch_size) and COUNT.holds(max_prompt_tokens)):
        raise ValueError(f"batch_size and max_prompt_tokens must be >= 1, got {batch_size} and {max_prompt_tokens}.")
    ends = tuple(stop_ids or stop_token_ids(tokenizer, getattr(model, "generation_config", None)))
    pad_id = ends[0] if tokenizer.pad_token_id is None else tokenizer.pad_token_id
    prompts = _encode_prompts(tokenizer, requests)
    form = reasoning_format(tokenizer)
    check_prompt_lengths(prompts, max_prompt_tokens, desc)
    device = model_device(model)
    results: list[Generation | None] = [None] * len(requests)
    with inference_session(model), tqdm(total=len(requests), desc=desc, disable=not progress) as bar:
        for batch in length_sorted_batches([len(p) for p in prompts], batch_size):
            generators = [torch.Generator(device=device).manual_seed(requests[i].seed) for i in batch]
            decoded = _decode_batch(
                model, [prompts[i] for i in batch], generators, settings, frozenset(ends), pad_id, cue
            )
            for i, row in zip(batch, decoded):
                text = tokenizer.decode(row.tokens, skip_special_tokens=True)
                results[i] = Generation.decoded(requests[i].key, text, len(row.tokens), row.finished, row.read, form)
            bar.update(len(batch))
    return results  # type: ignore[return-value]  # every slot was filled above


def _encode_prompts(tokenizer: PreTrainedTokenizerBase, requests: Sequence[GenerationRequest]) -> list[list[int]]:
    prompts = []
    for request in requests:
        ids = encode_prompt(tokenizer, request.prompt)
        if not ids:
            raise ValueError(f"Request {request.key!r} has an empty prompt; render it with render_prompt first.")
        prompts.append(ids)
    return prompts
