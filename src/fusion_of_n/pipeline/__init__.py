"""Batch generation of synthetic data: read rows, sample one pool per row, aggregate it by every
requested method, append one record per row; resumable."""
