"""The outcome of checking one prediction against one expected answer."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class VerifyResult:
    """One verdict; `method` says which stage decided it and `reason` why, so a wrong score can be traced."""

    correct: bool
    extracted: str | None
    answer_type: str
    method: str
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)
