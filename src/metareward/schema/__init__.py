"""What a setting may hold, stated once beside its dataclass field (`rules`), and the parts of a run named by
`_target_` (`components`). It imports nothing else of metareward, so every package states its settings with it."""
