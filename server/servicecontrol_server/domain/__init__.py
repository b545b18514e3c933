"""The domain: resources, their rules and state machine. Pure Python, no I/O."""
