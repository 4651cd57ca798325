"""Train with Meta-Rewarding or Self-Rewarding: `python train.py +experiment=meta_reward`."""

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

# Paths in the config (data/, outputs/) are relative to this checkout, wherever the command is run from.
os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

INTERRUPTED_EXIT_CODE = 130  # what metareward.run exits with after Ctrl-C, having printed the resume command


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from metareward.run import main as run
    from metareward.termination import TERMINATED_EXIT_CODE, sigterm_interrupts

    with sigterm_interrupts() as sigterm:
        try:
            return run(cfg)
        except SystemExit as stop:
            if sigterm.received and stop.code == INTERRUPTED_EXIT_CODE:
                sys.exit(TERMINATED_EXIT_CODE)
            raise


if __name__ == "__main__":
    main()
