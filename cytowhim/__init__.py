"""cytowhim: flow cytometry for the clinical immunology lab.

Read FCS files (:func:`read_fcs`), gate leukocyte subsets (``gating``), turn percentages into
absolute counts (cells/µL), check QC and reference intervals, compare timepoints.
"""

from .errors import CytowhimError, FCSError, FCSWarning
from .fcs import read_fcs, read_fcs_metadata, write_fcs
from .sample import Sample

__version__ = "0.1.0"

__all__ = [
    "CytowhimError",
    "FCSError",
    "FCSWarning",
    "Sample",
    "read_fcs",
    "read_fcs_metadata",
    "write_fcs",
    "__version__",
]
