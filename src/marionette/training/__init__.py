"""Meta-training of the MarioNETte generator and discriminator (paper §Training): the run
configuration, checkpoints and the inference export, validation, and the training loop."""
