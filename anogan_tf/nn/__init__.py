"""Layers, networks and losses the model families build on."""
