"""FCS files: read (2.0-3.2) and write (3.1). See :func:`read_fcs` and :func:`write_fcs`."""

from .describe import describe
from .read import read_fcs, read_fcs_metadata
from .write import write_fcs

__all__ = ["describe", "read_fcs", "read_fcs_metadata", "write_fcs"]
