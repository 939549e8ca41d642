"""In-memory spreadsheet with Google Sheets' value semantics, the state behind FakeSheetsServer.

What it emulates, as Google documents or does:
- A1 ranges with quoted or bare titles, whole rows/columns and open ends; an unknown sheet is
  400 "Unable to parse range"; a range outside the grid is 400 "exceeds grid limits".
- Values read back as strings with trailing empty cells and rows trimmed (empty rows in the middle
  come back as ``[]``); ``null`` in written values leaves the cell unchanged; ``""`` clears it.
- valueInputOption RAW stores text verbatim. USER_ENTERED is *visibly* different so tests can catch
  it: ``=expr`` becomes a formula whose shown value is the result of simple arithmetic
  (``=1+1`` reads back as ``2``; anything else reads as ``#NAME?``; FORMULA rendering returns the
  source), numbers are re-formatted (``+79161234567`` → ``79161234567``, ``-05`` → ``-5``),
  ``true``/``false`` become ``TRUE``/``FALSE`` and a leading apostrophe is dropped.
- More than 50,000 characters in one cell is 400, as Google answers.
- append finds the table (the last non-empty row inside the range) and, with INSERT_ROWS, inserts
  new rows after it, growing the grid; the response names the rows used in updates.updatedRange.
- spreadsheets.batchUpdate is atomic (all requests or none) and implements addSheet, deleteSheet,
  updateSheetProperties, setDataValidation, repeatCell, updateCells, insertDimension,
  deleteDimension, appendDimension and sortRange. Other request kinds the API defines are accepted
  and ignored (empty reply). Validations and formats are recorded by range; row inserts do not
  move them (Google would).
- Values are returned as strings (FORMULA shows formulas), except number cells a test types as a person
  would (``FakeSheetsServer.type_number``): FORMATTED_VALUE gives their shown text (``100 001``,
  ``1.00001E+5``), UNFORMATTED_VALUE the JSON number itself, as Google does.
- Staff actions the API refuses: writes into a protected range are 403 "You are trying to edit a protected
  cell or object"; growing a workbook past its cell limit (10,000,000 cells; settable) is 400 "This action
  would increase the number of cells in the workbook above the limit of 10000000 cells".
"""

from __future__ import annotations

import ast
import copy
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MAX_CELL_CHARS = 50_000
WORKBOOK_CELL_LIMIT = 10_000_000
PROTECTED_MESSAGE = (
    "You are trying to edit a protected cell or object. Please contact the spreadsheet owner to remove "
    "protection if you need to edit."
)
DEFAULT_ROWS = 1000
DEFAULT_COLUMNS = 26

_CELL_REF = re.compile(r"^([A-Za-z]{1,3})?([0-9]+)?$")
_BARE_TITLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOOKS_LIKE_CELL = re.compile(r"^[A-Za-z]{1,3}[0-9]+$")
_FIELD_NAME = re.compile(r"[^,()]+")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class ApiError(Exception):
    """An error answer in Google's shape: HTTP status, message and canonical status name."""

    def __init__(self, status: int, message: str, reason: str = "INVALID_ARGUMENT") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


@dataclass(frozen=True)
class Formula:
    """A cell entered as a formula (USER_ENTERED ``=…``): its source and shown value."""

    source: str
    value: str


@dataclass(frozen=True)
class Number:
    """A number staff typed into the UI: its value and the text its number format shows."""

    value: float
    text: str

    def unformatted(self) -> int | float:
        """What UNFORMATTED_VALUE returns: a JSON number (integral values without a fraction)."""
        return int(self.value) if float(self.value).is_integer() else self.value


Cell = str | Formula | Number


def shown(cell: Cell) -> str:
    """What FORMATTED_VALUE returns for a cell."""
    return cell.value if isinstance(cell, Formula) else cell.text if isinstance(cell, Number) else cell


@dataclass(frozen=True)
class Bounds:
    """A rectangle in 0-based grid coordinates; ends are exclusive, ``None`` is open."""

    row1: int = 0
    row2: int | None = None
    col1: int = 0
    col2: int | None = None

    def clamp(self, rows: int, cols: int) -> Bounds:
        """The same rectangle cut to a grid of `rows` × `cols`."""
        row2 = rows if self.row2 is None else min(self.row2, rows)
        col2 = cols if self.col2 is None else min(self.col2, cols)
        return Bounds(self.row1, row2, self.col1, col2)

    def contains(self, other: Bounds) -> bool:
        """Whether `other` lies wholly inside this rectangle (open ends count as infinite)."""

        def inside(lo: int, hi: int | None, olo: int, ohi: int | None) -> bool:
            if olo < lo:
                return False
            if hi is None:
                return True
            return ohi is not None and ohi <= hi

        return inside(self.row1, self.row2, other.row1, other.row2) and inside(
            self.col1, self.col2, other.col1, other.col2
        )

    def covers(self, row: int, col: int) -> bool:
        """Whether the cell (row, col) is inside."""
        return (
            self.row1 <= row
            and (self.row2 is None or row < self.row2)
            and self.col1 <= col
            and (self.col2 is None or col < self.col2)
        )


@dataclass
class Validation:
    """A data-validation rule applied to a rectangle of a sheet."""

    bounds: Bounds
    rule: dict[str, Any]


@dataclass
class FormatRecord:
    """A userEnteredFormat applied to a rectangle (in order; later records win)."""

    bounds: Bounds
    format: dict[str, Any]


@dataclass
class Sheet:
    """One grid sheet: properties plus a ragged list of rows of cells."""

    sheet_id: int
    title: str
    row_count: int = DEFAULT_ROWS
    column_count: int = DEFAULT_COLUMNS
    frozen_rows: int = 0
    frozen_columns: int = 0
    hidden: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    cells: list[list[Cell]] = field(default_factory=list)
    validations: list[Validation] = field(default_factory=list)
    formats: list[FormatRecord] = field(default_factory=list)

    def get(self, row: int, col: int) -> Cell:
        """The cell at 0-based (row, col); empty string when never written."""
        if row < len(self.cells) and col < len(self.cells[row]):
            return self.cells[row][col]
        return ""

    def put(self, row: int, col: int, cell: Cell) -> None:
        """Store a cell, growing the ragged rows as needed."""
        while len(self.cells) <= row:
            self.cells.append([])
        line = self.cells[row]
        if col >= len(line):
            if cell == "":
                return
            line.extend([""] * (col + 1 - len(line)))
        line[col] = cell

    def properties(self, index: int) -> dict[str, Any]:
        """SheetProperties as the API returns them."""
        grid: dict[str, Any] = {"rowCount": self.row_count, "columnCount": self.column_count}
        if self.frozen_rows:
            grid["frozenRowCount"] = self.frozen_rows
        if self.frozen_columns:
            grid["frozenColumnCount"] = self.frozen_columns
        props: dict[str, Any] = {
            "sheetId": self.sheet_id,
            "title": self.title,
            "index": index,
            "sheetType": "GRID",
            "gridProperties": grid,
        }
        if self.hidden:
            props["hidden"] = True
        props.update(copy.deepcopy(self.extra))
        return props

    def used_rows(self) -> int:
        """Rows up to the last one holding a non-empty cell."""
        for i in range(len(self.cells) - 1, -1, -1):
            if any(shown(c) != "" for c in self.cells[i]):
                return i + 1
        return 0

    def resize(self, rows: int, cols: int) -> None:
        """Change the grid size, dropping cells that fall outside it."""
        self.row_count, self.column_count = rows, cols
        del self.cells[rows:]
        for line in self.cells:
            del line[cols:]


def col_letters(index: int) -> str:
    """Column letters for a 0-based column index."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("A") + rem) + letters
    return letters


def _col_index(letters: str) -> int:
    index = 0
    for ch in letters.upper():
        index = index * 26 + ord(ch) - ord("A") + 1
    return index - 1


def quote_title(title: str) -> str:
    """A title as Google prints it in ranges: bare when it is a plain identifier, else quoted."""
    if _BARE_TITLE.match(title) and not _LOOKS_LIKE_CELL.match(title):
        return title
    return "'" + title.replace("'", "''") + "'"


def format_range(title: str, bounds: Bounds) -> str:
    """A1 text of a closed rectangle on `title`."""
    assert bounds.row2 is not None and bounds.col2 is not None
    start = f"{col_letters(bounds.col1)}{bounds.row1 + 1}"
    end = f"{col_letters(bounds.col2 - 1)}{bounds.row2}"
    ref = start if start == end else f"{start}:{end}"
    return f"{quote_title(title)}!{ref}"


def format_number(value: float) -> str:
    """How Google's default number format shows a number."""
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.15g}"


_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}


def evaluate_formula(source: str) -> str:
    """Shown value of a formula: arithmetic on literals is computed, anything else is ``#NAME?``."""

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](walk(node.left), walk(node.right))
        raise ValueError("not arithmetic")

    try:
        tree = ast.parse(source[1:].replace("^", "**"), mode="eval")
        return format_number(walk(tree))
    except ZeroDivisionError:
        return "#DIV/0!"
    except (ValueError, SyntaxError, TypeError, OverflowError):
        return "#NAME?"


def _too_long() -> ApiError:
    return ApiError(400, f"Your input contains more than the maximum of {MAX_CELL_CHARS} characters in a single cell.")


def input_cell(value: Any, user_entered: bool) -> Cell | None:
    """The cell a written JSON value becomes (``None``: leave the cell unchanged)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return format_number(float(value))
    if not isinstance(value, str):
        raise ApiError(400, f"Invalid values: struct and list values are not supported in a cell, got {value!r:.60}")
    if len(value) > MAX_CELL_CHARS:
        raise _too_long()
    if not user_entered:
        return value
    if value.startswith("="):
        return Formula(value, evaluate_formula(value))
    if value.startswith("'"):
        return value[1:]
    compact = value.strip()
    if _NUMBER.match(compact):
        return format_number(float(compact))
    if compact.upper() in ("TRUE", "FALSE"):
        return compact.upper()
    return value


def extended_value_cell(value: Mapping[str, Any]) -> Cell:
    """The cell an ExtendedValue (updateCells / repeatCell) becomes; stringValue is never parsed."""
    if value.get("formulaValue") is not None:
        source = str(value["formulaValue"])
        return Formula(source, evaluate_formula(source))
    if value.get("stringValue") is not None:
        text = str(value["stringValue"])
        if len(text) > MAX_CELL_CHARS:
            raise _too_long()
        return text
    if value.get("numberValue") is not None:
        return format_number(float(value["numberValue"]))
    if value.get("boolValue") is not None:
        return "TRUE" if value["boolValue"] else "FALSE"
    return ""


def trim_rows(rows: list[list[str]]) -> list[list[str]]:
    """Drop trailing empty cells and rows in place, as the API does when it returns values."""
    for line in rows:
        while line and line[-1] == "":
            line.pop()
    while rows and not rows[-1]:
        rows.pop()
    return rows


def _masked(value: Any, paths: Sequence[Sequence[str]]) -> Any:
    """`value` restricted to the field-mask `paths` (each a list of names)."""
    if any(not p for p in paths) or not isinstance(value, dict):
        return copy.deepcopy(value)
    out: dict[str, Any] = {}
    for key in {p[0] for p in paths}:
        if key in value:
            out[key] = _masked(value[key], [p[1:] for p in paths if p[0] == key])
    return out


def parse_field_mask(text: str) -> dict[str, Any]:
    """Parse a partial-response ``fields`` selector (``a.b,c(d,e/f)``) into a tree; ``None`` = whole."""
    pos = 0

    def parse_list() -> dict[str, Any]:
        nonlocal pos
        node: dict[str, Any] = {}
        while pos < len(text) and text[pos] != ")":
            m = _FIELD_NAME.match(text, pos)
            parts = [p for p in re.split(r"[./]", m.group(0).strip()) if p] if m else []
            if not m or not parts:
                raise ValueError(f"Invalid field selection {text!r}")
            pos = m.end()
            leaf: dict[str, Any] | None = None
            if pos < len(text) and text[pos] == "(":
                pos += 1
                leaf = parse_list()
                if pos >= len(text) or text[pos] != ")":
                    raise ValueError(f"Invalid field selection {text!r}")
                pos += 1
            for part in reversed(parts[1:]):
                leaf = {part: leaf}
            _merge_mask(node, parts[0], leaf)
            if pos < len(text) and text[pos] == ",":
                pos += 1
        return node

    tree = parse_list()
    if pos != len(text):
        raise ValueError(f"Invalid field selection {text!r}")
    return tree


def _merge_mask(node: dict[str, Any], key: str, sub: dict[str, Any] | None) -> None:
    if key in node and node[key] is None:
        return  # already selected whole
    if sub is None:
        node[key] = None
        return
    child = node.setdefault(key, {})
    for k, v in sub.items():
        _merge_mask(child, k, v)


def _mask_paths(fields: str) -> list[list[str]]:
    """A field mask as a list of paths (``*`` selects everything)."""
    out: list[list[str]] = []

    def walk(tree: dict[str, Any], prefix: list[str]) -> None:
        for key, sub in tree.items():
            if sub is None or not sub:
                out.append([*prefix, key])
            else:
                walk(sub, [*prefix, key])

    try:
        walk(parse_field_mask(fields), [])
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    return out


def deep_merge(into: dict[str, Any], update: Mapping[str, Any]) -> None:
    """Merge `update` into `into`, recursing into nested objects (how formats accumulate)."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            deep_merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


class Spreadsheet:
    """A spreadsheet: ordered sheets plus the operations the values and batchUpdate APIs perform."""

    def __init__(self, spreadsheet_id: str, title: str = "MarketingBot (fake)", sheets: Iterable[str] = ("Sheet1",)):
        self.spreadsheet_id = spreadsheet_id
        self.title = title
        self.sheets: list[Sheet] = []
        self._next_id = 0
        self.protected: list[tuple[Sheet, Bounds]] = []
        self.cell_limit = WORKBOOK_CELL_LIMIT
        for name in sheets:
            self.add_sheet(name)

    # -- sheets ----------------------------------------------------------------------------------

    def find(self, title: str) -> Sheet | None:
        """The sheet titled `title` (exact match first, then case-insensitive, as Google resolves)."""
        for sheet in self.sheets:
            if sheet.title == title:
                return sheet
        folded = title.casefold()
        return next((s for s in self.sheets if s.title.casefold() == folded), None)

    def by_id(self, sheet_id: int, where: str) -> Sheet:
        """The sheet with `sheet_id`, or Google's "No grid with id" error."""
        for sheet in self.sheets:
            if sheet.sheet_id == sheet_id:
                return sheet
        raise ApiError(400, f"Invalid {where}: No grid with id: {sheet_id}")

    def add_sheet(
        self,
        title: str,
        rows: int = DEFAULT_ROWS,
        cols: int = DEFAULT_COLUMNS,
        sheet_id: int | None = None,
        index: int | None = None,
    ) -> Sheet:
        """Create an empty sheet (no validation: callers check duplicates)."""
        if sheet_id is None:
            sheet_id = self._next_id
            while any(s.sheet_id == sheet_id for s in self.sheets):
                sheet_id += 1
        self._next_id = max(self._next_id, sheet_id + 1)
        sheet = Sheet(sheet_id=sheet_id, title=title, row_count=rows, column_count=cols)
        self.sheets.insert(len(self.sheets) if index is None else max(0, min(index, len(self.sheets))), sheet)
        return sheet

    def require(self, title: str) -> Sheet:
        """The sheet titled `title` or a KeyError (for the Python-side helpers)."""
        sheet = self.find(title)
        if sheet is None:
            raise KeyError(f"no sheet titled {title!r}")
        return sheet

    # -- ranges ----------------------------------------------------------------------------------

    def resolve(self, text: str, *, check_grid: bool = True) -> tuple[Sheet, Bounds]:
        """The sheet and rectangle an A1 range names, as Google parses it."""
        unparsable = ApiError(400, f"Unable to parse range: {text}")
        title: str | None
        ref: str | None
        if text.startswith("'"):
            title, ref = _split_quoted(text, unparsable)
        elif "!" in text:
            title, _, ref = text.partition("!")
            if not ref:
                raise unparsable
        else:
            title, ref = None, text
        if title is None:
            named = self.find(text)
            if named is not None:
                title, ref = named.title, None
            else:
                visible = [s for s in self.sheets if not s.hidden] or self.sheets
                title = visible[0].title
        sheet = self.find(title)
        if sheet is None:
            raise unparsable
        bounds = Bounds() if ref is None else _parse_ref(ref, unparsable)
        if check_grid and (bounds.row1 >= sheet.row_count or bounds.col1 >= sheet.column_count):
            raise self._grid_error(sheet, bounds.row1, bounds.col1)
        return sheet, bounds

    @staticmethod
    def _grid_error(sheet: Sheet, row: int, col: int) -> ApiError:
        return ApiError(
            400,
            f"Range ({quote_title(sheet.title)}!{col_letters(col)}{row + 1}) exceeds grid limits. "
            f"Max rows: {sheet.row_count}, max columns: {sheet.column_count}",
        )

    # -- values API ------------------------------------------------------------------------------

    def read(self, text: str, major: str = "ROWS", render: str = "FORMATTED_VALUE") -> dict[str, Any]:
        """A ValueRange for `text` (spreadsheets.values.get)."""
        sheet, bounds = self.resolve(text)
        box = bounds.clamp(sheet.row_count, sheet.column_count)
        assert box.row2 is not None and box.col2 is not None
        pick: Callable[[Cell], Any]
        if render == "FORMULA":
            pick = lambda c: c.source if isinstance(c, Formula) else shown(c)  # noqa: E731 - a one-line picker
        elif render == "UNFORMATTED_VALUE":
            pick = lambda c: c.unformatted() if isinstance(c, Number) else shown(c)  # noqa: E731
        else:
            pick = shown
        last_row = min(box.row2, len(sheet.cells))
        grid = [
            [pick(sheet.get(r, c)) for c in range(box.col1, min(box.col2, len(sheet.cells[r])))]
            for r in range(box.row1, last_row)
        ]
        if major == "COLUMNS":
            width = max((len(line) for line in grid), default=0)
            grid = [[line[c] if c < len(line) else "" for line in grid] for c in range(width)]
        result: dict[str, Any] = {"range": format_range(sheet.title, box), "majorDimension": major}
        values = trim_rows(grid)
        if values:
            result["values"] = values
        return result

    def plan_write(self, text: str, values: Any, user_entered: bool, major: str = "ROWS") -> _Write:
        """Validate a write of `values` at `text` without applying it."""
        sheet, bounds = self.resolve(text)
        rows = _as_rows(values)
        if major == "COLUMNS":
            height = max((len(c) for c in rows), default=0)
            rows = [[col[r] if r < len(col) else None for col in rows] for r in range(height)]
        cells = [[input_cell(v, user_entered) for v in line] for line in rows]
        return self._plan(sheet, bounds, cells, text)

    def _plan(self, sheet: Sheet, bounds: Bounds, cells: list[list[Cell | None]], text: str) -> _Write:
        height = len(cells)
        width = max((len(line) for line in cells), default=0)
        if bounds.row2 == bounds.row1 + 1 and bounds.col2 == bounds.col1 + 1:
            bounds = Bounds(bounds.row1, None, bounds.col1, None)  # one cell is only an anchor
        if bounds.row2 is not None and height > bounds.row2 - bounds.row1:
            raise ApiError(
                400,
                f"Requested writing within range [{text}], but tried writing to row [{bounds.row1 + height}]",
            )
        if bounds.col2 is not None and width > bounds.col2 - bounds.col1:
            raise ApiError(
                400,
                f"Requested writing within range [{text}], but tried writing to column "
                f"[{col_letters(bounds.col1 + width - 1)}]",
            )
        if bounds.row1 + height > sheet.row_count:
            raise self._grid_error(sheet, bounds.row1 + height - 1, bounds.col1)
        if bounds.col1 + width > sheet.column_count:
            raise self._grid_error(sheet, bounds.row1, bounds.col1 + width - 1)
        self.check_protection(sheet, bounds.row1, bounds.col1, cells)
        return _Write(sheet, bounds.row1, bounds.col1, cells)

    def check_protection(self, sheet: Sheet, row0: int, col0: int, cells: Sequence[Sequence[Cell | None]]) -> None:
        """403 when any cell written falls in a protected range."""
        for guarded, bounds in self.protected:
            if guarded is not sheet:
                continue
            for i, line in enumerate(cells):
                for j, cell in enumerate(line):
                    if cell is not None and bounds.covers(row0 + i, col0 + j):
                        raise ApiError(403, PROTECTED_MESSAGE, "PERMISSION_DENIED")

    def total_cells(self) -> int:
        """Cells in every grid (what Google's workbook limit counts)."""
        return sum(s.row_count * s.column_count for s in self.sheets)

    def check_growth(self, added: int) -> None:
        """400 when adding `added` cells would pass the workbook's cell limit."""
        if added > 0 and self.total_cells() + added > self.cell_limit:
            raise ApiError(
                400, "This action would increase the number of cells in the workbook above the limit of 10000000 cells."
            )

    def apply(self, write: _Write) -> dict[str, Any]:
        """Apply a planned write; returns the UpdateValuesResponse."""
        updated = 0
        for i, line in enumerate(write.cells):
            for j, cell in enumerate(line):
                if cell is not None:
                    write.sheet.put(write.row + i, write.col + j, cell)
                    updated += 1
        height = len(write.cells)
        width = max((len(line) for line in write.cells), default=0)
        result: dict[str, Any] = {"spreadsheetId": self.spreadsheet_id}
        if height and width:
            box = Bounds(write.row, write.row + height, write.col, write.col + width)
            result.update(
                updatedRange=format_range(write.sheet.title, box),
                updatedRows=sum(1 for line in write.cells if any(c is not None for c in line)),
                updatedColumns=width,
                updatedCells=updated,
            )
        return result

    def append(
        self, text: str, values: Any, user_entered: bool, insert_rows: bool, major: str = "ROWS"
    ) -> dict[str, Any]:
        """spreadsheets.values.append: write after the table found in `text`."""
        sheet, bounds = self.resolve(text)
        box = bounds.clamp(sheet.row_count, sheet.column_count)
        assert box.row2 is not None and box.col2 is not None
        table_rows = [
            r
            for r in range(box.row1, min(box.row2, len(sheet.cells)))
            if any(shown(sheet.get(r, c)) != "" for c in range(box.col1, min(box.col2, len(sheet.cells[r]))))
        ]
        result: dict[str, Any] = {"spreadsheetId": self.spreadsheet_id}
        if table_rows:
            first_col = min(
                next(c for c in range(box.col1, box.col2) if shown(sheet.get(r, c)) != "") for r in table_rows
            )
            last_col = max(
                max(c for c in range(box.col1, min(box.col2, len(sheet.cells[r]))) if shown(sheet.get(r, c)) != "")
                for r in table_rows
            )
            table = Bounds(table_rows[0], table_rows[-1] + 1, first_col, last_col + 1)
            result["tableRange"] = format_range(sheet.title, table)
            start_row, start_col = table_rows[-1] + 1, first_col
        else:
            start_row, start_col = box.row1, box.col1
        rows = _as_rows(values)
        if major == "COLUMNS":
            height = max((len(c) for c in rows), default=0)
            rows = [[col[r] if r < len(col) else None for col in rows] for r in range(height)]
        cells = [[input_cell(v, user_entered) for v in line] for line in rows]
        width = max((len(line) for line in cells), default=0)
        if start_col + width > sheet.column_count:
            raise self._grid_error(sheet, start_row, start_col + width - 1)
        if insert_rows and cells:
            self.check_growth(len(cells) * sheet.column_count)
        elif start_row + len(cells) > sheet.row_count:
            self.check_growth((start_row + len(cells) - sheet.row_count) * sheet.column_count)
        self.check_protection(sheet, start_row, start_col, cells)
        if insert_rows and cells:
            if start_row < len(sheet.cells):
                sheet.cells[start_row:start_row] = [[] for _ in cells]
            sheet.row_count += len(cells)
        elif start_row + len(cells) > sheet.row_count:
            sheet.row_count = start_row + len(cells)
        result["updates"] = self.apply(_Write(sheet, start_row, start_col, cells))
        return result

    def clear(self, text: str) -> str:
        """spreadsheets.values.clear; returns the cleared range."""
        sheet, bounds = self.resolve(text)
        box = bounds.clamp(sheet.row_count, sheet.column_count)
        assert box.row2 is not None and box.col2 is not None
        for r in range(box.row1, min(box.row2, len(sheet.cells))):
            line = sheet.cells[r]
            for c in range(box.col1, min(box.col2, len(line))):
                line[c] = ""
        return format_range(sheet.title, box)

    # -- spreadsheets.batchUpdate ----------------------------------------------------------------

    def batch_update(self, requests: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Apply every request or none (Google's batchUpdate is atomic)."""
        snapshot = (copy.deepcopy(self.sheets), self._next_id)
        try:
            replies = []
            for i, request in enumerate(requests):
                kinds = [k for k, v in request.items() if v is not None]
                if not kinds:
                    raise ApiError(400, f"Invalid requests[{i}]: No request set.")
                if len(kinds) > 1:
                    raise ApiError(
                        400,
                        f"Invalid JSON payload received. Oneof field 'kind' is already set. Cannot set '{kinds[1]}'",
                    )
                kind = kinds[0]
                handler = _HANDLERS.get(kind)
                body = request[kind]
                replies.append(handler(self, body, f"requests[{i}].{kind}") if handler else {})
            return replies
        except Exception:
            self.sheets, self._next_id = snapshot
            raise

    def _grid_bounds(self, grid_range: Mapping[str, Any], where: str) -> tuple[Sheet, Bounds]:
        sheet = self.by_id(int(grid_range.get("sheetId") or 0), where)

        def opt(name: str) -> int | None:
            value = grid_range.get(name)
            return None if value is None else int(value)

        bounds = Bounds(
            opt("startRowIndex") or 0, opt("endRowIndex"), opt("startColumnIndex") or 0, opt("endColumnIndex")
        )
        if (bounds.row2 is not None and bounds.row2 < bounds.row1) or (
            bounds.col2 is not None and bounds.col2 < bounds.col1
        ):
            raise ApiError(400, f"Invalid {where}: the range's end index must not be before its start")
        return sheet, bounds

    def _add_sheet(self, body: Mapping[str, Any], where: str) -> dict[str, Any]:
        props = dict(body.get("properties") or {})
        title = props.get("title") or f"Sheet{len(self.sheets) + 1}"
        if self.find(title) is not None:
            raise ApiError(
                400, f'Invalid {where}: A sheet with the name "{title}" already exists. Please enter another name.'
            )
        sheet_id = props.get("sheetId")
        if sheet_id is not None:
            sheet_id = int(sheet_id)
            if sheet_id < 0 or any(s.sheet_id == sheet_id for s in self.sheets):
                raise ApiError(400, f"Invalid {where}: A sheet with id {sheet_id} already exists or is invalid.")
        grid = props.get("gridProperties") or {}
        index = props.get("index")
        self.check_growth(int(grid.get("rowCount") or DEFAULT_ROWS) * int(grid.get("columnCount") or DEFAULT_COLUMNS))
        sheet = self.add_sheet(
            title,
            rows=int(grid.get("rowCount") or DEFAULT_ROWS),
            cols=int(grid.get("columnCount") or DEFAULT_COLUMNS),
            sheet_id=sheet_id,
            index=None if index is None else int(index),
        )
        sheet.frozen_rows = int(grid.get("frozenRowCount") or 0)
        sheet.frozen_columns = int(grid.get("frozenColumnCount") or 0)
        sheet.hidden = bool(props.get("hidden"))
        return {"addSheet": {"properties": sheet.properties(self.sheets.index(sheet))}}

    def _delete_sheet(self, body: Mapping[str, Any], where: str) -> dict[str, Any]:
        sheet = self.by_id(int(body.get("sheetId") or 0), where)
        if len(self.sheets) == 1:
            raise ApiError(400, f"Invalid {where}: You can't remove all the sheets in a document.")
        self.sheets.remove(sheet)
        return {}

    def _update_sheet_properties(self, body: Mapping[str, Any], where: str) -> dict[str, Any]:
        fields = body.get("fields")
        if not fields:
            raise ApiError(400, f"Invalid {where}: You must specify which fields to update.")
        props = body.get("properties") or {}
        sheet = self.by_id(int(props.get("sheetId") or 0), where)
        current = sheet.properties(self.sheets.index(sheet))
        paths = [["*"]] if fields.strip() == "*" else _mask_paths(fields)
        for path in paths:
            if path == ["*"]:
                deep_merge(current, props)
                continue
            source: Any = props
            for name in path:
                source = source.get(name) if isinstance(source, Mapping) else None
            target = current
            for name in path[:-1]:
                target = target.setdefault(name, {})
            target[path[-1]] = copy.deepcopy(source)
        title = current.get("title")
        if not title:
            raise ApiError(400, f"Invalid {where}: a sheet title must not be empty")
        other = self.find(title)
        if other is not None and other is not sheet and other.title == title:
            raise ApiError(400, f'Invalid {where}: A sheet with the name "{title}" already exists.')
        grid = current.get("gridProperties") or {}
        sheet.title = title
        sheet.hidden = bool(current.get("hidden"))
        sheet.frozen_rows = int(grid.get("frozenRowCount") or 0)
        sheet.frozen_columns = int(grid.get("frozenColumnCount") or 0)
        sheet.resize(int(grid.get("rowCount") or sheet.row_count), int(grid.get("columnCount") or sheet.column_count))
        known = {"sheetId", "title", "index", "sheetType", "gridProperties", "hidden"}
        sheet.extra = {k: v for k, v in current.items() if k not in known and v is not None}
        index = current.get("index")
        if index is not None and int(index) != self.sheets.index(sheet):
            self.sheets.remove(sheet)
            self.sheets.insert(max(0, min(int(index), len(self.sheets))), sheet)
        return {}

    def _set_data_validation(self, body: Mapping[str, Any], where: str) -> dict[str, Any]:
        sheet, bounds = self._grid_bounds(body.get("range") or {}, where)
        sheet.validations = [v for v in sheet.validations if not bounds.contains(v.bounds)]
        rule = body.get("rule")
        if rule:
            sheet.validations.append(Validation(bounds, copy.deepcopy(dict(rule))))
        return {}

    def _repeat_cell(self, body: Mapping[str, Any], where: str) -> dict[str, Any]:
        fields = body.get("fields")
        if not fields:
            raise ApiError(400, f"Invalid {where}: At least one field must be specified.")
        sheet, bounds = self._grid_bounds(body.get("range") or {}, where)
        cell = body.get("cell") or {}
        self._apply_cell_data(sheet, bounds, cell, _mask_paths(fields), where)
        return {}

    def _update_cells(self, body: Mapping[str, Any], where: str) -> dict[str, Any]:
        fields = body.get("fields")
        if not fields:
            raise ApiError(400, f"Invalid {where}: At least one field must be specified.")
        paths = _mask_paths(fields)
        if body.get("start") is not None:
            start = body["start"]
            sheet = self.by_id(int(start.get("sheetId") or 0), where)
            limit = Bounds(int(start.get("rowIndex") or 0), None, int(start.get("columnIndex") or 0), None)
        else:
            sheet, limit = self._grid_bounds(body.get("range") or {}, where)
        for i, row in enumerate(body.get("rows") or []):
            for j, cell in enumerate((row or {}).get("values") or []):
                r, c = limit.row1 + i, limit.col1 + j
                if not limit.covers(r, c):
                    raise ApiError(400, f"Invalid {where}: the rows do not fit in the range")
                self._apply_cell_data(sheet, Bounds(r, r + 1, c, c + 1), cell or {}, paths, where)
        return {}

    def _apply_cell_data(
        self, sheet: Sheet, bounds: Bounds, cell: Mapping[str, Any], paths: list[list[str]], where: str
    ) -> None:
        everything = any(p == ["*"] for p in paths)
        heads = {p[0] for p in paths}
        box = bounds.clamp(sheet.row_count, sheet.column_count)
        assert box.row2 is not None and box.col2 is not None
        if bounds.row1 >= sheet.row_count or bounds.col1 >= sheet.column_count:
            raise self._grid_error(sheet, bounds.row1, bounds.col1)
        if everything or "userEnteredValue" in heads:
            value = extended_value_cell(cell.get("userEnteredValue") or {})
            for r in range(box.row1, box.row2):
                for c in range(box.col1, box.col2):
                    sheet.put(r, c, value)
        if everything or "userEnteredFormat" in heads:
            fmt = cell.get("userEnteredFormat") or {}
            sub = [["userEnteredFormat"]] if everything else [p for p in paths if p[0] == "userEnteredFormat"]
            masked = _masked({"userEnteredFormat": fmt}, sub).get("userEnteredFormat", {})
            sheet.formats.append(FormatRecord(bounds, masked))
        if everything or "dataValidation" in heads:
            rule = cell.get("dataValidation")
            sheet.validations = [v for v in sheet.validations if not bounds.contains(v.bounds)]
            if rule:
                sheet.validations.append(Validation(bounds, copy.deepcopy(dict(rule))))

    def _dimension(self, body: Mapping[str, Any], where: str) -> tuple[Sheet, bool, int, int]:
        rng = body.get("range") or {}
        sheet = self.by_id(int(rng.get("sheetId") or 0), where)
        rows = rng.get("dimension") == "ROWS"
        if rng.get("dimension") not in ("ROWS", "COLUMNS"):
            raise ApiError(400, f"Invalid {where}: dimension must be ROWS or COLUMNS")
        start, end = int(rng.get("startIndex") or 0), int(rng.get("endIndex") or 0)
        size = sheet.row_count if rows else sheet.column_count
        if not 0 <= start < end:
            raise ApiError(400, f"Invalid {where}: endIndex must be greater than startIndex")
        if start > size:
            raise ApiError(400, f"Invalid {where}: startIndex {start} is beyond the grid ({size})")
        return sheet, rows, start, end

    def _insert_dimension(self, body: Mapping[str, Any], where: str) -> dict[str, Any]:
        sheet, rows, start, end = self._dimension(body, where)
        count = end - start
        if rows:
            if start < len(sheet.cells):
                sheet.cells[start:start] = [[] for _ in range(count)]
            sheet.row_count += count
        else:
            for line in sheet.cells:
                if start < len(line):
                    line[start:start] = [""] * count
            sheet.column_count += count
        return {}

    def _delete_dimension(self, body: Mapping[str, Any], where: str) -> dict[str, Any]:
        sheet, rows, start, end = self._dimension(body, where)
        size = sheet.row_count if rows else sheet.column_count
        end = min(end, size)
        if end - start >= size:
            kind = "rows" if rows else "columns"
            raise ApiError(400, f"Invalid {where}: You can't delete all the {kind} on the sheet.")
        if rows:
            del sheet.cells[start:end]
            sheet.row_count -= end - start
        else:
            for line in sheet.cells:
                del line[start:end]
            sheet.column_count -= end - start
        return {}

    def _append_dimension(self, body: Mapping[str, Any], where: str) -> dict[str, Any]:
        sheet = self.by_id(int(body.get("sheetId") or 0), where)
        length = int(body.get("length") or 0)
        if length <= 0:
            raise ApiError(400, f"Invalid {where}: length must be positive")
        if body.get("dimension") == "ROWS":
            sheet.row_count += length
        elif body.get("dimension") == "COLUMNS":
            sheet.column_count += length
        else:
            raise ApiError(400, f"Invalid {where}: dimension must be ROWS or COLUMNS")
        return {}

    def _sort_range(self, body: Mapping[str, Any], where: str) -> dict[str, Any]:
        sheet, bounds = self._grid_bounds(body.get("range") or {}, where)
        specs = [
            (int(spec.get("dimensionIndex") or 0), spec.get("sortOrder") == "DESCENDING")
            for spec in body.get("sortSpecs") or []
        ]
        sort_block(sheet, bounds, specs)
        return {}

    # -- metadata --------------------------------------------------------------------------------

    def metadata(self, include_grid_data: bool = False, ranges: Sequence[str] = ()) -> dict[str, Any]:
        """The Spreadsheet resource (spreadsheets.get)."""
        wanted: dict[int, list[Bounds]] = {}
        for text in ranges:
            sheet, bounds = self.resolve(text)
            wanted.setdefault(sheet.sheet_id, []).append(bounds)
        sheets = []
        for index, sheet in enumerate(self.sheets):
            if ranges and sheet.sheet_id not in wanted:
                continue
            entry: dict[str, Any] = {"properties": sheet.properties(index)}
            if include_grid_data:
                entry["data"] = [self._grid_data(sheet, b) for b in wanted.get(sheet.sheet_id, [Bounds()])]
            sheets.append(entry)
        return {
            "spreadsheetId": self.spreadsheet_id,
            "properties": {
                "title": self.title,
                "locale": "ru_RU",
                "autoRecalc": "ON_CHANGE",
                "timeZone": "Europe/Moscow",
            },
            "sheets": sheets,
        }

    def _grid_data(self, sheet: Sheet, bounds: Bounds) -> dict[str, Any]:
        box = bounds.clamp(sheet.row_count, sheet.column_count)
        assert box.row2 is not None and box.col2 is not None
        reach = max([sheet.used_rows()] + [v.bounds.row2 or sheet.row_count for v in sheet.validations])
        row_data = []
        for r in range(box.row1, min(box.row2, reach)):
            values = []
            for c in range(box.col1, box.col2):
                values.append(self._cell_data(sheet, r, c))
            while values and not values[-1]:
                values.pop()
            row_data.append({"values": values} if values else {})
        while row_data and not row_data[-1]:
            row_data.pop()
        return {"startRow": box.row1, "startColumn": box.col1, "rowData": row_data}

    @staticmethod
    def _cell_data(sheet: Sheet, row: int, col: int) -> dict[str, Any]:
        data: dict[str, Any] = {}
        cell = sheet.get(row, col)
        if isinstance(cell, Formula):
            data["userEnteredValue"] = {"formulaValue": cell.source}
            data["formattedValue"] = cell.value
        elif isinstance(cell, Number):
            data["userEnteredValue"] = {"numberValue": cell.value}
            data["formattedValue"] = cell.text
        elif cell != "":
            data["userEnteredValue"] = {"stringValue": cell}
            data["formattedValue"] = cell
        fmt: dict[str, Any] = {}
        for record in sheet.formats:
            if record.bounds.covers(row, col):
                deep_merge(fmt, record.format)
        if fmt:
            data["userEnteredFormat"] = fmt
        rule = next((v.rule for v in reversed(sheet.validations) if v.bounds.covers(row, col)), None)
        if rule is not None:
            data["dataValidation"] = copy.deepcopy(rule)
        return data


@dataclass
class _Write:
    """A validated write waiting to be applied."""

    sheet: Sheet
    row: int
    col: int
    cells: list[list[Cell | None]]


def sort_block(sheet: Sheet, bounds: Bounds, specs: Sequence[tuple[int, bool]]) -> None:
    """Sort the rows of a rectangle like Google's sort: numbers before text, empty cells last."""
    box = bounds.clamp(sheet.row_count, sheet.column_count)
    assert box.row2 is not None and box.col2 is not None
    last = min(box.row2, sheet.used_rows())
    if last <= box.row1:
        return
    block = [[sheet.get(r, c) for c in range(box.col1, box.col2)] for r in range(box.row1, last)]

    col1, col2 = box.col1, box.col2

    def text_at(line: list[Cell], col: int) -> str:
        return shown(line[col - col1]) if col1 <= col < col2 else ""

    def key(col: int) -> Callable[[list[Cell]], tuple[int, float, str]]:
        def k(line: list[Cell]) -> tuple[int, float, str]:
            text = text_at(line, col).strip()
            return (0, float(text), "") if _NUMBER.match(text) else (1, 0.0, text.casefold())

        return k

    # Stable sorts from the last key to the first give a multi-key sort; empties always sink.
    for col, descending in reversed(list(specs)):
        filled = [line for line in block if text_at(line, col) != ""]
        empty = [line for line in block if text_at(line, col) == ""]
        block = sorted(filled, key=key(col), reverse=descending) + empty
    for i, line in enumerate(block):
        for j, cell in enumerate(line):
            sheet.put(box.row1 + i, box.col1 + j, cell)


def _as_rows(values: Any) -> list[list[Any]]:
    if values is None:
        return []
    if not isinstance(values, list) or any(not isinstance(line, list) for line in values):
        raise ApiError(400, "Invalid value at 'data.values' (type.googleapis.com/google.protobuf.ListValue)")
    return values


def _split_quoted(text: str, unparsable: ApiError) -> tuple[str, str | None]:
    title: list[str] = []
    i = 1
    while i < len(text):
        ch = text[i]
        if ch == "'":
            if text[i + 1 : i + 2] == "'":
                title.append("'")
                i += 2
                continue
            rest = text[i + 1 :]
            if not rest:
                return "".join(title), None
            if rest.startswith("!") and len(rest) > 1:
                return "".join(title), rest[1:]
            raise unparsable
        title.append(ch)
        i += 1
    raise unparsable


def _parse_ref(ref: str, unparsable: ApiError) -> Bounds:
    parts = ref.split(":")
    if len(parts) > 2:
        raise unparsable
    refs = []
    for part in parts:
        m = _CELL_REF.match(part.strip())
        if not m or not (m.group(1) or m.group(2)):
            raise unparsable
        col = _col_index(m.group(1)) if m.group(1) else None
        row = int(m.group(2)) - 1 if m.group(2) else None
        if row is not None and row < 0:
            raise unparsable
        refs.append((row, col))
    if len(refs) == 1:
        row, col = refs[0]
        if row is None or col is None:
            raise unparsable  # "A" or "5" alone is a named range, which the fake does not support
        return Bounds(row, row + 1, col, col + 1)
    (r1, c1), (r2, c2) = refs
    if (r1 is None) != (r2 is None) and c1 is None and c2 is None:
        raise unparsable
    row1, row2 = (r1 or 0), (None if r2 is None else r2 + 1)
    col1, col2 = (c1 or 0), (None if c2 is None else c2 + 1)
    if row2 is not None and row2 <= row1:
        row1, row2 = row2 - 1, row1 + 1
    if col2 is not None and col2 <= col1:
        col1, col2 = col2 - 1, col1 + 1
    return Bounds(row1, row2, col1, col2)


_HANDLERS: dict[str, Callable[[Spreadsheet, Mapping[str, Any], str], dict[str, Any]]] = {
    "addSheet": Spreadsheet._add_sheet,
    "deleteSheet": Spreadsheet._delete_sheet,
    "updateSheetProperties": Spreadsheet._update_sheet_properties,
    "setDataValidation": Spreadsheet._set_data_validation,
    "repeatCell": Spreadsheet._repeat_cell,
    "updateCells": Spreadsheet._update_cells,
    "insertDimension": Spreadsheet._insert_dimension,
    "deleteDimension": Spreadsheet._delete_dimension,
    "appendDimension": Spreadsheet._append_dimension,
    "sortRange": Spreadsheet._sort_range,
}
