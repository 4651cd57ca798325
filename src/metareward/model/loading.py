"""Loading the policy model and tokenizer from a config-level description.

`path` is one of: `builtin:smollm2-135m-instruct` (the embedded default, converted once from its GGUF),
`builtin:tiny` (a tiny random model for smoke tests), a local checkpoint directory, or a hub id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from metareward.model.embedded import EMBEDDED_NAME, ensure_embedded_checkpoint
from metareward.model.tiny import build_tiny

BUILTIN_PREFIX = "builtin:"
BUILTIN_MODELS = (EMBEDDED_NAME, "tiny")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message names the path and the fix."""


@dataclass(frozen=True)
class ModelSpec:
    path: str
    dtype: str = "float32"
    trust_remote_code: bool = False
    attn_implementation: str | None = None

    def problems(self) -> list[str]:
        found = []
        if self.dtype not in DTYPES:
            found.append(f"model.dtype={self.dtype!r} is not one of {sorted(DTYPES)}")
        if self.path.startswith(BUILTIN_PREFIX) and self.path[len(BUILTIN_PREFIX) :] not in BUILTIN_MODELS:
            names = ", ".join(BUILTIN_PREFIX + name for name in BUILTIN_MODELS)
            found.append(f"model.path={self.path!r} is not a built-in model; built-in models are: {names}")
        elif _looks_local(self.path) and not Path(self.path).expanduser().is_dir():
            found.append(f"model.path={self.path!r} is not an existing directory")
        return found


def _looks_local(path: str) -> bool:
    return path.startswith(("/", ".", "~")) or Path(path).expanduser().exists()


def load_model_and_tokenizer(spec: ModelSpec) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    if spec.path == BUILTIN_PREFIX + "tiny":
        model, tokenizer = build_tiny()
        return model.to(DTYPES[spec.dtype]), tokenizer
    location = (
        str(ensure_embedded_checkpoint())
        if spec.path == BUILTIN_PREFIX + EMBEDDED_NAME
        else str(Path(spec.path).expanduser())
    )
    extra = {"attn_implementation": spec.attn_implementation} if spec.attn_implementation else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=spec.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            location, dtype=DTYPES[spec.dtype], trust_remote_code=spec.trust_remote_code, **extra
        )
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"could not load model.path={spec.path!r}: {first_line}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer
