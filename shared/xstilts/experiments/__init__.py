"""Experiments: planning stages, submitting, results, statistics, export and scoring."""
