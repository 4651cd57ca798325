"""Train with Meta-Rewarding or Self-Rewarding: `python train.py +experiment=meta_reward`."""

import os
from pathlib import Path

import hydra
from omegaconf import DictConfig

# Paths in the config (data/, outputs/) are relative to this checkout, wherever the command is run from.
os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from metareward.run import main as run

    return run(cfg)


if __name__ == "__main__":
    main()
