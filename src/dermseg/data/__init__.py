"""Data: ISIC layout discovery and validation, synthetic data, preprocessing."""
