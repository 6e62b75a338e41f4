"""Online forecasting of VM metrics with prediction intervals, model selection and drift."""

from agents.forecasting.series import SeriesForecaster

__all__ = ["SeriesForecaster"]
