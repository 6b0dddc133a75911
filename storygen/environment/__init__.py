"""What every entry point starts from: the config tree and its resolvers, `.env` and secrets,
the device and precision, how the run shows up on W&B, and the memory allocator."""
