"""Markdown report and environment facts."""

from sam3m4.report.markdown import render_report

__all__ = ["render_report"]
