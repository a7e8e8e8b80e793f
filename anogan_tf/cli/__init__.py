"""The command-line layer: absl flags built from the Config."""
