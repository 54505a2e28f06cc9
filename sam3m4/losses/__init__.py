"""Training losses: SAM 3-style set prediction (Hungarian matching of queries to instances)."""

from sam3m4.losses.set_prediction import SetLossWeights, hungarian_match, set_prediction_loss

__all__ = ["SetLossWeights", "hungarian_match", "set_prediction_loss"]
