"""Compensation: undo spillover between fluorescence detectors, once per sample.

A spillover (spectrum) matrix has one row per fluorochrome and one column per detector: row i is
how fluorochrome i shows up on each detector. Compensated values are ``raw @ pinv(matrix)``
(the inverse for the usual square matrix), one column per fluorochrome.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import GatingError, StrategyError

UNCOMPENSATED = "uncompensated"
FROM_FILE = "FCS"  # Gating-ML's name for "the spillover matrix in the FCS file"


@dataclass(frozen=True, eq=False)
class Compensation:
    """A spillover matrix: ``fluorochromes`` x ``detectors`` (names as in the sample)."""

    id: str
    fluorochromes: tuple[str, ...]
    detectors: tuple[str, ...]
    matrix: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        m = np.asarray(self.matrix, dtype=np.float64)
        if m.shape != (len(self.fluorochromes), len(self.detectors)):
            raise GatingError(
                f"compensation {self.id!r}: matrix is {m.shape[0]} x {m.shape[1]} but names "
                f"{len(self.fluorochromes)} fluorochromes x {len(self.detectors)} detectors"
            )
        if not np.all(np.isfinite(m)):
            raise GatingError(f"compensation {self.id!r}: matrix has non-finite values")
        object.__setattr__(self, "matrix", m)

    def unmixing(self) -> np.ndarray:
        """detectors x fluorochromes matrix M with compensated = raw[:, detectors] @ M."""
        if self.matrix.shape[0] == self.matrix.shape[1]:
            try:
                return np.linalg.inv(self.matrix)
            except np.linalg.LinAlgError:
                raise GatingError(f"compensation {self.id!r}: matrix is singular") from None
        return np.linalg.pinv(self.matrix)

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Compensate ``raw`` (events x detectors, in ``self.detectors`` order)."""
        return np.asarray(raw, dtype=np.float64) @ self.unmixing()

    @classmethod
    def from_spillover(cls, frame, id: str = FROM_FILE) -> Compensation:
        """From a square pandas DataFrame (index = columns = channel names), e.g. Sample.spillover."""
        names = tuple(str(c) for c in frame.columns)
        return cls(id, names, names, np.asarray(frame, dtype=np.float64))

    @classmethod
    def from_csv(cls, path: str | os.PathLike, id: str | None = None) -> Compensation:
        """A square matrix in CSV with a header row of channel names (FlowJo / FlowKit style);
        an optional first column of row names must repeat the header."""
        path = Path(path)
        with path.open(newline="") as f:
            rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
        if len(rows) < 2:
            raise StrategyError(f"{path}: a compensation CSV needs a header row and values")
        header = [c.strip() for c in rows[0]]
        body = rows[1:]
        if header and header[0] == "" or (body and _not_number(body[0][0])):
            header = header[1:] if header[0] == "" else header
            body = [r[1:] for r in body]
        n = len(header)
        try:
            matrix = np.array([[float(v) for v in r] for r in body], dtype=np.float64)
        except ValueError as exc:
            raise StrategyError(f"{path}: compensation value is not a number ({exc})") from None
        if matrix.shape != (n, n):
            raise StrategyError(
                f"{path}: compensation matrix is {matrix.shape[0]} x "
                f"{matrix.shape[1] if matrix.ndim == 2 else '?'} but the header names {n} channels"
            )
        return cls(id or path.stem, tuple(header), tuple(header), matrix)


def _not_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return True
    return False
