"""Trained models kept beside a study: stores (a folder or S3), which models to keep, and export."""
