"""Training the autoencoder and its context models, and shipping a run as a checkpoint."""
