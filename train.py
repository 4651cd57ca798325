"""Train with Meta-Rewarding or Self-Rewarding: `python train.py +experiment=meta_reward`."""

import os
import sys
import traceback
from pathlib import Path

import hydra
from omegaconf import DictConfig

# Paths in the config (data/, outputs/) are relative to this checkout, wherever the command is run from.
os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

INTERRUPTED_EXIT_CODE = 130  # what metareward.run.training exits with after Ctrl-C, having printed the resume command
FAULT_EXIT_CODE = 1  # a fault outside the run (the evaluator, a vLLM server): finished stages are kept, resume later


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from metareward.evaluation.evaluators import EvaluatorError
    from metareward.generation.vllm_server import VLLMServerError
    from metareward.run.termination import TERMINATED_EXIT_CODE, sigterm_interrupts
    from metareward.run.training import main as run
    from metareward.run.training import resume_command

    with sigterm_interrupts() as sigterm:
        try:
            return run(cfg)
        except SystemExit as stop:
            if sigterm.received and stop.code == INTERRUPTED_EXIT_CODE:
                sys.exit(TERMINATED_EXIT_CODE)
            raise
        except (EvaluatorError, VLLMServerError) as error:  # names the endpoint (never the key) or the server's log
            command = resume_command(Path(str(cfg.paths.output_dir)))
            print(f"error: {error}\nfinished stages are kept. Resume with:\n  {command}", file=sys.stderr)
            sys.exit(FAULT_EXIT_CODE)
        except Exception as error:  # noqa: BLE001 - a fault (a bug of ours or a library's): its traceback, then what to do
            traceback.print_exc()
            command = resume_command(Path(str(cfg.paths.output_dir)))
            cause = (str(error).strip().splitlines() or [""])[0]
            print(
                f"failed: {type(error).__name__}: {cause} (the traceback above); finished stages are kept; resume "
                f"with: {command}",
                file=sys.stderr,
            )
            sys.exit(FAULT_EXIT_CODE)


if __name__ == "__main__":
    main()
