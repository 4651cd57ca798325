"""The roles one model plays, by the names every layer uses for them."""

# The three trained roles; the meta-judge shares the judge's adapter unless adapters.mode says otherwise.
ROLES = ("actor", "judge", "meta_judge")
# The seed model M0, the model the loop starts from: the base weights, or after a warm start the warm-started
# weights, frozen there. It answers as SEED_ROLE (evaluation baselines, anchored rejections, the export of
# iteration 0) and judges as SEED_JUDGE_ROLE (the seed judge, the seed evaluator): with split adapters those are
# the warm-started actor and judge adapters.
SEED_ROLE = "seed"
SEED_JUDGE_ROLE = "seed_judge"
SEED_FACES = {SEED_ROLE: "actor", SEED_JUDGE_ROLE: "judge"}  # the trained role whose weights each seed role holds
