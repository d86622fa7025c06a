"""Reports: Markdown + self-contained HTML + JSON, figures, and statistics over seeds."""

from .document import Report, write_index
from .figures import mean_band, new_figure, save_figure
from .stats import fmt_mean_std, fmt_paired, mean_std, paired_t_interval, summarize

__all__ = ["Report", "fmt_mean_std", "fmt_paired", "mean_band", "mean_std", "new_figure", "paired_t_interval",
           "save_figure", "summarize", "write_index"]
