"""Running a training: the Hydra entry point, the preflight check, the run directory and signals."""
