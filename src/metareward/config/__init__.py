"""The one config layer: typed, frozen settings per config group, each rule beside its field, one check."""
