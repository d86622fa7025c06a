"""Reports: Markdown + self-contained HTML + JSON, figures, and statistics over seeds."""

from .document import Report, write_index
from .figures import mean_band, new_figure, save_figure
from .stats import fmt_interval, fmt_mean_std, mean_std, paired_t_interval, summarize, t_quantile

__all__ = ["Report", "fmt_interval", "fmt_mean_std", "mean_band", "mean_std", "new_figure", "paired_t_interval",
           "save_figure", "summarize", "t_quantile", "write_index"]
