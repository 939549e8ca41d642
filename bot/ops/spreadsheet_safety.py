"""Cells written for spreadsheet programs (CSV files staff open in Excel/LibreOffice/Sheets)."""

from __future__ import annotations

# A cell starting with one of these is read as a formula (or, for tab/CR, shifted into one) by spreadsheet
# programs: `=HYPERLINK(...)` in a partner's message must stay text when staff open the export (OWASP CSV
# injection advice: prefix a single quote).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: str) -> str:
    """The cell as text a spreadsheet program shows verbatim: a leading `'` before a formula trigger."""
    return "'" + cell if cell.startswith(FORMULA_TRIGGERS) else cell
