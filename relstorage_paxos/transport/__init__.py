"""The gRPC edge of a node: codec, peer transport and the Sequencer service (DESIGN.md §2)."""
