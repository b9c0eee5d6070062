"""The answer read from a study: summary and statistics, its wording, figures, report and dashboard."""
