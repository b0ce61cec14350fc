"""Figures (moved from actlab/plots.py; split into one module per figure family next)."""

from actlab.plots.large_activation import *  # noqa: F401,F403
