"""Scoring: the official ISIC metrics and evaluators."""
