"""The opening of a report: the findings as table rows (verdict and rule set apart) and as a short summary paragraph.

Nothing here chooses a word. Each row is a finding of :mod:`actlab.findings` whose rule texts are taken
out of its detail (they are said once, in the report's reading guide) and whose verdict, the words its
rule chose, is taken out of its value. The summary says the same rows again, grouped by :data:`TOPICS`:
one sentence per topic, rows that differ only in their last part (``path attribution, hidden1``...)
said once per verdict with the parts listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from actlab.findings import Finding, said_rules, split_verdict

TOPICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Training", ("double descent", "clean training samples", "noisy labels", "training instability")),
    ("On the test set", ("best test", "final test")),
    ("Signal separation", ("strongest clean-noisy", "separation at")),
    ("Large activation", ("large activation",)),
    ("Path attribution", ("path attribution",)),
)
"""Topic of a sentence -> beginnings of the finding names it gathers; other findings end the paragraph."""

READING_NOTES: tuple[str, ...] = ("seeds", "tests behind the words")
"""Findings that say how to read the others: stated once, in the reading guide, not in the table."""


def is_reading_note(finding: Finding) -> bool:
    """The finding says how to read the others (:data:`READING_NOTES`)."""
    return finding.name in READING_NOTES


@dataclass(frozen=True)
class FindingRow:
    """One line of the findings table.

    Attributes
    ----------
    name, value : str
        The finding and its numbers, without its verdict.
    verdict : str
        The words its rules chose (empty when no rule speaks).
    rules : list of str
        Names of those rules (``floor_words``...), said once in the reading guide.
    detail : str
        How the numbers were read, without the rule texts.
    """

    name: str
    value: str
    verdict: str
    rules: list[str]
    detail: str


def finding_rows(findings: Sequence[Finding]) -> list[FindingRow]:
    """The findings (reading notes left out) as table rows: rule texts out of the details, verdicts out of the values.

    A finding whose rule is said but whose value holds none of the rule's starred phrases (``input``, ``present in
    3 of 5 seeds``) is all verdict, and so is one whose value gives a verdict per part (``hidden1: decodable;
    hidden2: not shown decodable``): split, the parts would lose their verdicts.
    """
    rows = []
    for finding in findings:
        if is_reading_note(finding):
            continue
        detail, names = said_rules(finding.detail)
        value, verdict = split_verdict(finding.value, names)
        if names and not verdict:  # the rule speaks but names none of its phrases ("input"): its words are the value
            value, verdict = "", value
        elif verdict and all(": " in part and part.split(": ", 1)[1] in verdict.split("; ")
                             for part in finding.value.split("; ")):  # a verdict per part ("hidden1: decodable; ..."): kept paired
            value, verdict = "", finding.value
        rows.append(FindingRow(finding.name, value, verdict, names, detail))
    return rows


def summary_sentences(findings: Sequence[Finding]) -> list[str]:
    """The summary paragraph of the headline findings: over seeds a first sentence saying so, then
    :func:`abstract_sentences` of their rows."""
    seeds = [f"Values are medians over {f.value} seeds with their intervals (how to read them: below)."
             for f in findings if f.name == "seeds"]
    return seeds + abstract_sentences(finding_rows(findings))


def abstract_sentences(rows: Sequence[FindingRow]) -> list[str]:
    """One sentence per topic of :data:`TOPICS` that has rows, then one for the rest (at most six).

    Parameters
    ----------
    rows : sequence of FindingRow
        :func:`finding_rows` of the headline findings.

    Returns
    -------
    list of str
        ``"Training — double descent (test loss): no; noisy labels memorised: epoch 76."``, and so on.
    """
    return list(topic_sentences(rows).values())


def topic_sentences(rows: Sequence[FindingRow]) -> dict[str, str]:
    """Topic of :data:`TOPICS` (or ``Also``) -> its sentence of :func:`abstract_sentences`, for topics with rows."""
    topics = [topic for topic, _ in TOPICS] + ["Also"]
    by_topic: dict[str, list[FindingRow]] = {topic: [] for topic in topics}
    for row in rows:
        topic = next((topic for topic, starts in TOPICS if row.name.startswith(starts)), "Also")
        by_topic[topic].append(row)
    return {topic: sentence(topic, by_topic[topic]) for topic in topics if by_topic[topic]}


def sentence(topic: str, rows: Sequence[FindingRow]) -> str:
    """``"<topic> — <clause>; <clause>."``: one clause per row, rows of one stem said once per verdict."""
    return f"{topic} — " + "; ".join(_clauses(topic, rows)) + "."


def _clauses(topic: str, rows: Sequence[FindingRow]) -> list[str]:
    """A clause per row; rows ``<stem>, <part>`` of one stem with verdicts: one clause per verdict, parts listed."""
    groups: dict[str, list[FindingRow]] = {}
    for row in rows:
        stem = row.name.rsplit(", ", 1)[0] if ", " in row.name and row.verdict else row.name
        groups.setdefault(stem, []).append(row)
    clauses = []
    for stem, members in groups.items():
        name = _without_topic(topic, stem)
        if len(members) == 1:
            row = members[0]
            said = ", ".join(part for part in (row.value, row.verdict and _emphasised(row.verdict)) if part)
            clauses.append(f"{name}: {said}" if name else said)
            continue
        verdicts: dict[str, list[str]] = {}
        for row in members:
            verdicts.setdefault(row.verdict, []).append(row.name.rsplit(", ", 1)[1])
        said = ", ".join(f"{_emphasised(verdict)} ({', '.join(parts)})" for verdict, parts in verdicts.items())
        clauses.append(f"{name}: {said}" if name else said)
    return clauses


def _emphasised(verdict: str) -> str:
    """``beyond its null; shrunk`` -> ``*beyond its null* and *shrunk*`` (Markdown emphasis)."""
    return " and ".join(f"*{part}*" for part in verdict.split("; "))


def _without_topic(topic: str, name: str) -> str:
    """The name without the topic's own words (``large activation explained by`` -> ``explained by``)."""
    return name[len(topic):].lstrip(" ,") if name.lower().startswith(topic.lower()) else name
