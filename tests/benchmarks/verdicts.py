"""Targets of ``make bench`` (docs/performance.md), judged PASS or FAIL as each is measured and
listed together at the end. Judging prints a verdict: nothing here asserts, and no test ever
fails on a time."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    limit: str
    passed: bool | None  # None: not measured in this run (limit then says why)

    def line(self) -> str:
        if self.passed is None:
            return f"  SKIP  {self.target:<48} ({self.limit})"
        word = "PASS" if self.passed else "FAIL"
        return f"  {word}  {self.target:<48} {self.measured:>9}  (target ≤ {self.limit})"


JUDGED: list[Verdict] = []


def judge(target: str, value: float, limit: float, unit: str = "", digits: int = 2) -> Verdict:
    """Whether value is at most limit, printed now and kept for the summary."""
    verdict = Verdict(target, f"{value:.{digits}f}{unit}", f"{limit:g}{unit}", value <= limit)
    JUDGED.append(verdict)
    print(verdict.line(), flush=True)
    return verdict


def skipped(target: str, why: str) -> None:
    """A target this run could not measure, and why."""
    verdict = Verdict(target, "", why, None)
    JUDGED.append(verdict)
    print(verdict.line(), flush=True)


def summary() -> str:
    met = sum(verdict.passed is True for verdict in JUDGED)
    missed = sum(verdict.passed is False for verdict in JUDGED)
    skips = len(JUDGED) - met - missed
    lines = ["", "targets (docs/performance.md):", *(verdict.line() for verdict in JUDGED)]
    lines.append(f"{met} met, {missed} missed, {skips} not measured")
    return "\n".join(lines)
