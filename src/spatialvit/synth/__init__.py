"""Synthetic spatially structured data: the simplified positional-attention model, its experiments (patch
association, transfer), their configs and plots."""
