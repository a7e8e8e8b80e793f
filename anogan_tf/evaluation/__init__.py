"""Metrics and decision thresholds on scores."""
