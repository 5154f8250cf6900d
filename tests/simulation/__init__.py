"""The deterministic simulator: the bridge's production classes, wired as in production, in a
simulated world on a virtual clock, where one seed is one history (``make sim``)."""
