"""Online anomaly detection: univariate series detectors and the per-VM detector."""
