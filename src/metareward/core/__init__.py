"""The pure core: prompts, parsing, pair selection, Bradley-Terry, seeding (numpy + stdlib) and the losses and
log-probs (plain PyTorch). Nothing here knows Lightning or Hydra."""
