"""What runs any family: the training driver, workdirs, checkpoints, history, devices."""
