"""The roles one model plays, by the names every layer uses for them."""

# The three trained roles; the meta-judge shares the judge's adapter unless adapters.mode says otherwise.
ROLES = ("actor", "judge", "meta_judge")
# The seed model M0: the base weights with every adapter off (evaluation baselines, the seed evaluator, anchors).
SEED_ROLE = "seed"
