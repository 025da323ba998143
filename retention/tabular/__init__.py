"""Tabular predictors: calibrated XGBoost churn risk (Telco) and offer acceptance (Bank Marketing)."""
