"""FIGARO (description -> REMI+): training data, training, export, fidelity evaluation, model card."""
