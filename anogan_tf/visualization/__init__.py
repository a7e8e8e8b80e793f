"""Plots and TensorBoard summaries."""
