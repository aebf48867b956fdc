"""Use cases that join the store and the core: imports, the demo, and (later) price publication and bill runs."""
