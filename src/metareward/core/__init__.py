"""Pure algorithms of the loop: prompts, parsing, pair selection, Bradley-Terry fit, seeding (numpy + stdlib)."""
