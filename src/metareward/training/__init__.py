"""Preference training: batching pairs into tensors and scoring them with the reference model (PyTorch)."""
