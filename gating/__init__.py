"""gating: the gating engine (strategies, gates, transforms); knows nothing of clinical counts."""
