"""A cascade of model stages: a cheap stage answers what it is sure of, the next the rest."""
