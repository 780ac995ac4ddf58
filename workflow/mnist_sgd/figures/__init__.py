"""Every figure, drawn from records: what they share (common), a run's own (run), a group's overlays
(group), a grid's (grid), and the analysis figures (scaling). Importing it selects matplotlib's
non-interactive Agg backend, before pyplot is imported.
"""

import matplotlib

matplotlib.use("Agg")  # no display: files only
