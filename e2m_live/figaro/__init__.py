"""FIGARO seq2seq model in plain PyTorch: config, model, inputs, checkpoints, incremental decoding."""
