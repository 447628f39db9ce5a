"""neurofm: foundation models of EEG and EMG (LaBraM and Neuro-BERT), from recordings to results."""

__version__ = "0.1.0"
