"""Training: the loop, prediction, batching and multi-task sampling."""
