"""The corpora, the dataset build and its reader, real labels, the feature estimator's calibration."""
