"""Lightning wiring of the pure core: the DPO module, the self-judging DataModule, and callbacks."""
