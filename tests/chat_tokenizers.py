"""Tokenizers of several chat families, built in memory from a small trained BPE (nothing downloaded).

- "llama3": a header-style template that writes BOS itself and ends turns with `<|eot_id|>`, while the tokenizer's
  eos is `<|end_of_text|>` and the generation config lists both (as Llama-3-Instruct does);
- "chatml": `<|im_start|>`/`<|im_end|>` turns, no BOS, the generation config listing `<|im_end|>` and
  `<|endoftext|>` (as Qwen2.5-Instruct does);
- "gemma": `<start_of_turn>`/`<end_of_turn>` turns whose template refuses a system message (as Gemma-2's does);
- "base": no chat template and a tokenizer that puts `<s>` in front of every text (as Llama-2 and Gemma base
  models do).
The templates are our own Jinja, written to produce each family's layout.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast

HEADER_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = ["Write a short answer to the question. The response is relevant and helpful. Score: 4"] * 4


def _tokenizer(specials: list[str], bos_prefix: str | None = None, **kwargs) -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    if bos_prefix is not None:
        bos_id = tokenizer.token_to_id(bos_prefix)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos_prefix} $A", pair=f"{bos_prefix} $A $B", special_tokens=[(bos_prefix, bos_id)]
        )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, **kwargs)


def llama3_like() -> tuple[PreTrainedTokenizerFast, GenerationConfig]:
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tokenizer = _tokenizer(
        specials,
        bos_prefix="<|begin_of_text|>",
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
        chat_template=HEADER_TEMPLATE,
    )
    ids = tokenizer.convert_tokens_to_ids(["<|end_of_text|>", "<|eot_id|>"])
    return tokenizer, GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=ids)


def chatml_like() -> tuple[PreTrainedTokenizerFast, GenerationConfig]:
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokenizer = _tokenizer(specials, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHATML_TEMPLATE)
    ids = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    return tokenizer, GenerationConfig(eos_token_id=ids)


def base_like() -> PreTrainedTokenizerFast:
    return _tokenizer(["<unk>", "<s>", "</s>"], bos_prefix="<s>", bos_token="<s>", eos_token="</s>", unk_token="<unk>")


GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ raise_exception('this template has no system role') }}{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n{{ message['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def gemma_like() -> PreTrainedTokenizerFast:
    specials = ["<pad>", "<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"]
    return _tokenizer(specials, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", chat_template=GEMMA_TEMPLATE)


THINKING_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}{% endif %}"
)
OPENED_THINKING_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
)


def thinking_like(opened_by_prompt: bool = False) -> PreTrainedTokenizerFast:
    """A ChatML tokenizer of a thinking model: `<think>` and `</think>` are ordinary added tokens (decoded with the
    text), and the template either has an `enable_thinking` switch that writes an empty block when off (as Qwen3's
    does) or opens the block in the generation prompt itself (as the DeepSeek-R1 distills' do)."""
    tokenizer, _ = chatml_like()
    tokenizer.chat_template = OPENED_THINKING_TEMPLATE if opened_by_prompt else THINKING_TEMPLATE
    tokenizer.add_tokens(["<think>", "</think>"])
    return tokenizer
