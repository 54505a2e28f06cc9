"""Evaluation loops: run a predictor over a dataset and score it with sam3m4.metrics."""
