"""One package per protocol: its request body, its decoding into the core's terms, its encoding of events."""
