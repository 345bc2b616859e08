"""A comparison in words: the answer to "did the candidate transfer better, and more evenly?",
one sentence per question, read off the same intervals and tests the tables show."""

from __future__ import annotations

from xstilts.comparisons.model import Change, Comparison, Side, StatisticChange


def verdict(c: Comparison) -> list[str]:
    """Sentences on the non-English mean, the spread across non-English languages and the
    languages that changed; the seed caveat is in the comparison's warnings."""
    stats = {s.statistic: s for s in c.statistics}
    lines: list[str] = []
    mean = stats.get("non_english_mean")
    if mean is not None and mean.difference is not None:
        lines.append(
            f"Accuracy: {_who(c.candidate, c.baseline)} "
            + _moved(mean, f"the non-English mean {c.metric}", "raised", "lowered", c.confidence)
            + _evidence(mean, "better transfer", "worse transfer")
        )
    std = stats.get("non_english_std")
    if std is not None and std.difference is not None:
        line = (
            "Spread: it "
            + _moved(
                std,
                "the standard deviation across non-English languages",
                "raised",
                "lowered",
                c.confidence,
            )
            + _evidence(std, "less even transfer", "more even transfer")
        )
        seeds = (len(c.baseline.seeds), len(c.candidate.seeds))
        # The bias favours the side with more seeds: hedge a smaller spread on that side only.
        if (
            std.significant
            and seeds[0] != seeds[1]
            and (seeds[1] > seeds[0]) == (std.difference < 0)
        ):
            line += (
                f" But the sides have {seeds[0]} and {seeds[1]} seeds, and a mean over more "
                "seeds has less training noise per language, so its spread is smaller for that "
                "reason alone: compare the same number of seeds a side."
            )
        if (
            std.significant
            and std.difference < 0
            and mean is not None
            and mean.significant
            and (mean.difference or 0) < 0
        ):
            line += (
                " (a smaller spread beside lower accuracy can be scores crowding towards "
                "chance rather than evener transfer)"
            )
        lines.append(line)
    others = [r for r in c.per_language if r.language != "en"]
    if others:
        up = [r.language for r in others if r.significant and (r.difference or 0) > 0]
        down = [r.language for r in others if r.significant and (r.difference or 0) < 0]
        lines.append(
            f"Languages: {len(up)} of {len(others)} non-English languages significantly higher"
            + (f" ({', '.join(up)})" if up else "")
            + f", {len(down)} lower"
            + (f" ({', '.join(down)})" if down else "")
            + " after Holm's adjustment."
        )
    return lines


def _who(candidate: Side, baseline: Side) -> str:
    def tasks(side: Side) -> str:
        return "+".join(t.upper() for t in side.intermediate_tasks) or "no intermediate task"

    return f"{tasks(candidate)} (vs {tasks(baseline)})"


def _moved(s: Change, what: str, up: str, down: str, confidence: float) -> str:
    low, high = s.ci_low, s.ci_high
    interval = (
        ""
        if low is None or high is None
        else f"{round(100 * confidence)}% interval [{100 * low:+.1f}, {100 * high:+.1f}]"
    )
    p = "" if s.p_value is None else f"p={s.p_value:.2g}"
    numbers = f"({', '.join(x for x in (interval, p) if x)})"
    diff = s.difference or 0.0
    if diff == 0:
        return f"did not change {what} {numbers}"
    return f"{up if diff > 0 else down} {what} by {abs(100 * diff):.1f} points {numbers}"


def _evidence(s: StatisticChange, if_up: str, if_down: str) -> str:
    if not s.significant:
        return ": no clear difference at this sample size."
    return f": evidence of {if_up if (s.difference or 0) > 0 else if_down}."
