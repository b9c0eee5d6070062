"""sweeper: Optuna sweeps of the tutorial CNN's regularizers on CIFAR-10, run by a fleet of workers."""

__version__ = "0.1.0"
