"""Sample-quality measures on any features: Frechet distance, KID, Inception Score, precision / recall;
and the offline MNIST judge."""
from .digits import (
           DigitClassifier,
           DigitReport,
           digit_report,
           load_digit_classifier,
           train_digit_classifier,
)
from .frechet import frechet_distance, gaussian_stats, kernel_inception_distance
from .inception_score import inception_score
from .manifold import knn_radii, precision_recall

__all__ = [
           "DigitClassifier",
           "DigitReport",
           "digit_report",
           "frechet_distance",
           "gaussian_stats",
           "inception_score",
           "kernel_inception_distance",
           "knn_radii",
           "precision_recall",
           "load_digit_classifier",
           "train_digit_classifier",
]
