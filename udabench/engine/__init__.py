"""Training engine: trainer loop, method context, evaluation, run directories, checkpoints, distribution."""
