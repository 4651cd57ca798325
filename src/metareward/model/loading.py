"""Loading the policy model and tokenizer from a config-level description.

`path` is one of: `builtin:smollm2-135m-instruct` (the embedded default, converted once from its GGUF),
`builtin:tiny` (a tiny random model for smoke tests), a local checkpoint directory, or a hub id.
`attn_implementation` is passed to transformers as it is (null: transformers' default), except `auto` (the default).
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from metareward.model.attention import PACKED_SDPA
from metareward.model.chat import THINKING_MODES, pin_thinking
from metareward.model.compat import enable_activation_checkpointing
from metareward.model.embedded import EMBEDDED_NAME, ensure_embedded_checkpoint
from metareward.model.precision import AUTO, DTYPES, ResolvedDtype, resolve_dtype
from metareward.model.projection import feed_projection_contiguously
from metareward.model.tiny import build_tiny
from metareward.schema.rules import FLAG, Choice, Value, setting

BUILTIN_PREFIX = "builtin:"
BUILTIN_MODELS = (EMBEDDED_NAME, "tiny")
QUANTIZATIONS = (None, "4bit", "8bit")
AUTO_ATTENTION = "auto"
FINETUNE_MODES = ("full", "lora")


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message names the path and the fix."""


@dataclass(frozen=True)
class ModelSpec:
    """The `model` group (conf/model/)."""

    path: str = setting("path", Value(str))
    # auto: bfloat16 where the hardware computes it natively and the weights do not train, else float32
    dtype: str = setting("dtype", Choice((AUTO, *sorted(DTYPES))), default=AUTO)
    trust_remote_code: bool = setting("trust_remote_code", FLAG, default=False)
    # auto: flash_attention_2 on CUDA with flash-attn and 16 bits, sdpa elsewhere on CUDA, sdpa_packed on CPU
    attn_implementation: str | None = setting("attn_implementation", Value(), default=AUTO_ATTENTION)
    # 4bit (NF4, QLoRA) or 8bit, with bitsandbytes on CUDA
    quantization: str | None = setting("quantization", Choice(QUANTIZATIONS), default=None)
    gradient_checkpointing: bool = setting("gradient_checkpointing", FLAG, default=False)
    # lora: LoRA adapters over frozen base weights (model.adapters); full: every weight trains, shared by all roles
    finetune: str = setting("finetune", Choice(FINETUNE_MODES), default="lora")
    # thinking models (a <think> block before the answer): template keeps the chat template's default; on / off set
    # its enable_thinking switch. The reasoning is never judged; see model/reasoning.py
    thinking: str = setting("thinking", Choice(THINKING_MODES), default="template")

    def resolved_dtype(self) -> ResolvedDtype:
        """The dtype the weights load in on this machine (`auto` decided; model/precision.py)."""
        return resolve_dtype(self.dtype, self.finetune)

    def attention(self) -> str | None:
        """The attention implementation to load with: `auto` is flash_attention_2 where flash-attn is installed, CUDA
        is visible and the dtype is 16-bit (flash-attn computes in fp16/bf16 only), sdpa elsewhere on CUDA, and on CPU
        sdpa_packed (sdpa with every decoding step on the key/value heads, model/attention.py)."""
        if self.attn_implementation != AUTO_ATTENTION:
            return self.attn_implementation
        if not torch.cuda.is_available():
            return PACKED_SDPA
        flash = is_installed("flash_attn")
        return "flash_attention_2" if flash and self.resolved_dtype().name != "float32" else "sdpa"

    def problems(self) -> list[str]:
        """What keeps `path` from naming a model to load (each field's own rule is stated beside it)."""
        found = []
        if self.path.startswith(BUILTIN_PREFIX) and self.path[len(BUILTIN_PREFIX) :] not in BUILTIN_MODELS:
            names = ", ".join(BUILTIN_PREFIX + name for name in BUILTIN_MODELS)
            found.append(f"model.path={self.path!r} is not a built-in model; built-in models are: {names}")
        elif _looks_local(self.path) and not Path(self.path).expanduser().is_dir():
            found.append(f"model.path={self.path!r} is not an existing directory")
        elif _looks_local(self.path):
            found.extend(checkpoint_problems(Path(self.path).expanduser(), "model.path"))
        found += attention_problems(self.attn_implementation)
        if self.finetune == "full" and self.quantization:
            found.append(
                f"model.finetune=full does not combine with model.quantization={self.quantization}: quantized weights "
                "cannot be trained; set model.quantization=null, or model.finetune=lora for QLoRA"
            )
        return found


def attention_problems(attention: str | None) -> list[str]:
    """Whether transformers knows `attention` (null, auto, a name it registers, or a kernel repository `org/name`);
    an unknown one used to stop the run after the config check, when the model loaded."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if attention in (None, AUTO_ATTENTION) or "/" in str(attention):
        return []
    known = ["eager", *ALL_ATTENTION_FUNCTIONS.valid_keys()]
    if attention in known:
        return []
    return [
        f"model.attn_implementation={attention!r} is not an attention transformers knows; use one of {known}, auto or null"
    ]


WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json")


def checkpoint_problems(directory: Path, key: str) -> list[str]:
    """What keeps a local directory from loading as a transformers checkpoint: it needs a readable config.json
    naming its model_type, weights, and a tokenizer. Checked before any model is loaded."""
    shown = f"{key}={str(directory)!r}"
    if not any(directory.iterdir()):
        return [f"{shown} is an empty directory; point it at a saved model (config.json, weights and tokenizer)"]
    has_tokenizer = any((directory / name).is_file() for name in TOKENIZER_FILES)
    config = directory / "config.json"
    if not config.is_file():
        what = "a tokenizer but no model" if has_tokenizer else "no config.json"
        return [f"{shown} holds {what}; point it at a saved model (config.json, weights and tokenizer)"]
    found = []
    problem = _config_problem(config)
    if problem:
        found.append(f"{shown}: {problem}; re-save the model or point at another directory")
    if not any(any(directory.glob(pattern)) for pattern in WEIGHT_PATTERNS):
        found.append(f"{shown} holds no model weights (*.safetensors or pytorch_model*.bin); save the model there")
    if not has_tokenizer:
        found.append(f"{shown} holds no tokenizer (tokenizer.json or tokenizer_config.json); save the tokenizer there")
    return found


def _config_problem(config: Path) -> str | None:
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"config.json is not valid JSON ({type(error).__name__}: {str(error).splitlines()[0]})"
    if not isinstance(data, dict) or not isinstance(data.get("model_type"), str):
        return "config.json does not name a model_type"
    return None


def is_installed(package: str) -> bool:
    """Whether `package` can be imported here (without importing it)."""
    return importlib.util.find_spec(package) is not None


def _looks_local(path: str) -> bool:
    return path.startswith(("/", ".", "~")) or Path(path).expanduser().exists()


def load_model_and_tokenizer(spec: ModelSpec) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model and tokenizer `spec` names, the tokenizer's thinking switch set as `model.thinking` asks."""
    model, tokenizer = _load(spec)
    feed_projection_contiguously(model)
    unpinned = pin_thinking(tokenizer, spec.thinking)
    if unpinned:
        raise ModelLoadError(unpinned)
    return model, tokenizer


def _load(spec: ModelSpec) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    attention = spec.attention()
    if spec.path == BUILTIN_PREFIX + "tiny":
        model, tokenizer = build_tiny()
        if attention:
            model.set_attn_implementation(attention)
        return model.to(spec.resolved_dtype().torch), tokenizer
    location = (
        str(ensure_embedded_checkpoint())
        if spec.path == BUILTIN_PREFIX + EMBEDDED_NAME
        else str(Path(spec.path).expanduser())
    )
    extra: dict = {"attn_implementation": attention} if attention else {}
    if spec.quantization:
        extra["quantization_config"] = _bitsandbytes_config(spec)
        # Quantized weights are made on the GPU that runs them: this process's, under a multi-process strategy.
        extra["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=spec.trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            location, dtype=spec.resolved_dtype().torch, trust_remote_code=spec.trust_remote_code, **extra
        )
    except (OSError, ValueError, ImportError) as error:  # ImportError: an attention whose package is missing
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"could not load model.path={spec.path!r}: {first_line}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if spec.quantization:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=spec.gradient_checkpointing)
    elif spec.gradient_checkpointing:
        enable_activation_checkpointing(model)
        model.enable_input_require_grads()  # LoRA over frozen weights: checkpointed blocks need a grad-carrying input
    return model, tokenizer


def _bitsandbytes_config(spec: ModelSpec):
    """NF4 with double quantization for QLoRA (Dettmers et al. 2023), or LLM.int8(); compute in model.dtype."""
    from transformers import BitsAndBytesConfig

    if spec.quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=spec.resolved_dtype().torch,
        )
    return BitsAndBytesConfig(load_in_8bit=True)
