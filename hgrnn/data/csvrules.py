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

__all__ = ["PIXEL_HINT", "RULES", "RULE_CODES", "Rule", "message"]


@dataclass(frozen=True)
class Rule:
    """code: short name (``check-data`` lists findings under it); message: a
    :meth:`str.format` template of the problem, the same for every row that breaks the
    rule but for the few fields it names (``check-data`` counts the rows per message);
    detail: a template appended by the readers, which name one row (its text)."""

    code: str
    message: str
    detail: str = ""


#: the rules, in the order a row is checked (a row's verdict is its first broken rule)
RULES = (
    # ---- parse rules: the line's text (csvparse.parse_line)
    Rule("header", "a header row: AVA CSVs have none (delete the first line)"),
    Rule("quoting", "bad quoting", " ({error}): {text!r}"),
    Rule("quoted-separator", "a quoted field holding a comma, quote or line break is not "
                             "supported", ": {text!r}"),
    Rule("blank", "a {blank} inside a field", ": {text!r}"),
    Rule("column-missing", "expected {want} columns, got {got}: a column seems missing",
         ": {text!r}"),
    Rule("columns", "expected {want} columns, got {got}", ": {text!r}"),
    Rule("empty", "empty {name}"),
    Rule("too-long", "{name} is longer than {limit} bytes", ": {size} bytes, {start!r}..."),
    Rule("nul", "{name} holds a NUL byte", ": {start!r}"),
    Rule("not-integer", "{name} must be an integer", ", got {text!r}"),
    Rule("not-number", "{name} must be a number", ", got {text!r}"),
    Rule("int-range", "{name} out of range (64-bit integers)", ": {text}"),
    # ---- value rules: the parsed values (ava.row_verdicts)
    Rule("box-range", "a box coordinate outside [0, 1]: boxes are normalised x1,y1,x2,y2"
                      "{hint}", ": {text!r}"),
    Rule("box-order", "x2 < x1 or y2 < y1 (x, y, width, height instead of x1, y1, x2, y2?)",
         ": {text!r}"),
    Rule("action-id", "action_id {action} is not an AVA action id (positive; -1 or empty "
                      "for a person box)", ": {text!r}"),
    Rule("timestamp-range", "timestamp out of range (0..4294967295 seconds)", ": {text!r}"),
    Rule("score-finite", "score is not a finite number", ": {text!r}"),
    Rule("score-float32", "score does not fit a 32-bit float (stores and models keep scores "
                          "as float32)", ": {text!r}"),
    Rule("unknown-id", "unknown action id {action}: {why}", "; the file holds {count} such id(s): "
                                                       "{shown}"),
)

#: code -> rule
RULE_CODES = {rule.code: rule for rule in RULES}

#: the pixel-coordinates hint of ``box-range`` (a coordinate above 1)
PIXEL_HINT = " (pixel coordinates? divide x by the frame width and y by its height)"


def message(code: str, detail: bool = True, **fields) -> str:
    """The message of rule `code` with the row's `fields`, and its detail (a reader's
    message) or not (``check-data``'s)."""
    rule = RULE_CODES[code]
    if code == "unknown-id":
        fields["why"] = UNKNOWN_ID_WHY[bool(fields.get("own_map"))].format(**fields)
    return (rule.message + (rule.detail if detail else "")).format(**fields)


#: why an id is unknown: with AVA's label map (or a subset: ids 1..80 only), or with a label
#: map of one's own (one holding an id beyond 80, where 1..80 are no AVA classes)
UNKNOWN_ID_WHY = {
    False: ("neither in the label map ({classes} classes) nor an AVA action (1..80); a "
            "custom dataset needs --label-map with its classes"),
    True: ("not in the label map ({classes} classes of your own: it holds ids beyond 80, so "
           "1..80 are not AVA classes here); a typo?"),
}
