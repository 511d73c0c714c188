"""The rules an AVA CSV row must follow: one table, each rule with a short code and its
message.

Every reader of AVA CSVs applies these rules and no others: the readers of
:mod:`hgrnn.data.ava` (``read_annotations``, ``read_results``, ``read_exclusions``) stop at
the first row that breaks one (``FILE:LINE: message``, the error carrying the code), and
``check-data`` (:mod:`hgrnn.data.check`) lists every row that breaks one, under the rule's
code. A row breaks at most one rule: its first, in the order of :data:`RULES` (the parse
rules first, checked field by field from the left; then the value rules).

Where the rules are checked:

* parse rules (``header`` .. ``int-range``): line by line by
  :func:`hgrnn.data.csvparse.parse_line` (the fast pyarrow reader only ever passes rows
  that keep them);
* value rules (``box-range`` .. ``unknown-id``): vectorised over the parsed columns by
  :func:`hgrnn.data.ava.row_verdicts`, the same function for every reader and
  ``check-data``.

What is not a rule (accepted by every reader): an empty or ``-1`` ``action_id`` (a person
box without an action, also in ground truth); an empty ``person_id`` (unknown person, -1, as
in the 7-column form); AVA action ids outside the label map (skipped and counted).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Rule", "RULES", "RULE_CODES", "message"]


@dataclass(frozen=True)
class Rule:
    """code: short name (``check-data`` lists findings under it); message: a
    :meth:`str.format` template of the problem (the fields named in it are the row's)."""

    code: str
    message: str


#: the rules, in the order a row is checked (a row's verdict is its first broken rule)
RULES = (
    # ---- parse rules: the line's text (csvparse.parse_line)
    Rule("header", "a header row: AVA CSVs have none (delete the first line)"),
    Rule("quoting", "bad quoting ({error}): {text!r}"),
    Rule("quoted-separator", "a quoted field holding a comma, quote or line break is not "
                             "supported: {text!r}"),
    Rule("blank", "a {blank} inside a field: {text!r}"),
    Rule("column-missing", "expected {want} columns, got {got}: a column seems missing: "
                           "{text!r}"),
    Rule("columns", "expected {want} columns, got {got}: {text!r}"),
    Rule("empty", "empty {name}"),
    Rule("too-long", "{name} is {size} bytes long (at most {limit}): {start!r}..."),
    Rule("nul", "{name} holds a NUL byte: {start!r}"),
    Rule("not-integer", "{name} must be an integer, got {text!r}"),
    Rule("not-number", "{name} must be a number, got {text!r}"),
    Rule("int-range", "{name} {text} is out of range"),
    # ---- value rules: the parsed values (ava.row_verdicts)
    Rule("box-range", "a box coordinate outside [0, 1]: boxes are normalised x1,y1,x2,y2"
                      "{hint}"),
    Rule("box-order", "x2 < x1 or y2 < y1 (x, y, width, height instead of x1, y1, x2, y2?)"),
    Rule("action-id", "action_id {action} is not an AVA action id (positive; -1 or empty "
                      "for a person box)"),
    Rule("timestamp-range", "timestamp out of range (0..4294967295 seconds)"),
    Rule("score-finite", "score is not a finite number"),
    Rule("score-float32", "score does not fit a 32-bit float (stores and models keep scores "
                          "as float32)"),
    Rule("unknown-id", "unknown action id {action}: neither in the label map ({classes} "
                       "classes) nor an AVA action (1..80); a custom dataset needs "
                       "--label-map with its classes"),
)

#: code -> rule
RULE_CODES = {rule.code: rule for rule in RULES}

#: the pixel-coordinates hint of ``box-range`` (a coordinate above 1)
PIXEL_HINT = " (pixel coordinates? divide x by the frame width and y by its height)"


def message(code: str, **fields) -> str:
    """The message of rule `code` with the row's `fields`."""
    return RULE_CODES[code].message.format(**fields)
