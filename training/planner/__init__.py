"""The planners: training, held-out evaluation, comparison, plan statistics."""
