"""Sample-quality measures: Frechet distance and KID between feature sets, and the offline MNIST judge."""
from .digits import (
           DigitClassifier,
           DigitReport,
           digit_report,
           load_digit_classifier,
           train_digit_classifier,
)
from .frechet import frechet_distance, gaussian_stats, kernel_inception_distance

__all__ = [
           "DigitClassifier",
           "DigitReport",
           "digit_report",
           "frechet_distance",
           "gaussian_stats",
           "kernel_inception_distance",
           "load_digit_classifier",
           "train_digit_classifier",
]
