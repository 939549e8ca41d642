"""Request validation for the fake Sheets server, driven by the real Sheets v4 discovery document.

google-api-python-client ships the document (discovery_cache/documents/sheets.v4.json); reading it
means the fake rejects exactly what Google's front end rejects: unknown paths, unknown query
parameters, bad enum values and unknown JSON body fields, with Google's own error wording.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import googleapiclient  # type: ignore[import-untyped]

DISCOVERY_PATH = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents" / "sheets.v4.json"

_TRUE_FALSE = {"true", "false"}


class DiscoveryError(Exception):
    """A request the real API would reject before running it; carries the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ApiMethod:
    """One REST method of the API: its id (e.g. ``sheets.spreadsheets.values.get``) and signature."""

    id: str
    http_method: str
    path_regex: re.Pattern[str]
    query_params: Mapping[str, Mapping[str, Any]]
    request_schema: str | None
    literal_length: int = field(default=0, compare=False)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class SheetsDiscovery:
    """The API surface described by the discovery document, and checks against it."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self._schemas: Mapping[str, Mapping[str, Any]] = document["schemas"]
        self._global_params: Mapping[str, Mapping[str, Any]] = document.get("parameters", {})
        self._methods: list[ApiMethod] = []
        self._collect(document.get("resources", {}))
        # Most specific templates first, so `.../values:batchGet` never matches `{spreadsheetId}`.
        self._methods.sort(key=lambda m: m.literal_length, reverse=True)

    @classmethod
    def load(cls, path: Path = DISCOVERY_PATH) -> SheetsDiscovery:
        """Read the discovery document shipped with google-api-python-client."""
        return cls(json.loads(path.read_text(encoding="utf-8")))

    def _collect(self, resources: Mapping[str, Any]) -> None:
        for resource in resources.values():
            self._collect(resource.get("resources", {}))
            for spec in resource.get("methods", {}).values():
                template: str = spec.get("flatPath", spec["path"])
                params: Mapping[str, Mapping[str, Any]] = spec.get("parameters", {})
                pattern = ""
                literal = 0
                for part in re.split(r"(\{[^}]+\})", template):
                    if part.startswith("{"):
                        name = part[1:-1]
                        # A range may contain ':' (when not percent-encoded); ids never do.
                        chars = "[^/]+" if name == "range" else "[^/:]+"
                        pattern += f"(?P<{name}>{chars})"
                    else:
                        pattern += re.escape(part)
                        literal += len(part)
                query = {name: p for name, p in params.items() if p.get("location") == "query"}
                request = spec.get("request", {}).get("$ref")
                self._methods.append(
                    ApiMethod(
                        id=spec["id"],
                        http_method=spec["httpMethod"],
                        path_regex=re.compile("^/" + pattern + "$"),
                        query_params=query,
                        request_schema=request,
                        literal_length=literal,
                    )
                )

    def match(self, http_method: str, raw_path: str) -> tuple[ApiMethod, dict[str, str]]:
        """The method a request line addresses and its (percent-decoded) path parameters."""
        for method in self._methods:
            m = method.path_regex.match(raw_path)
            if m and method.http_method == http_method.upper():
                return method, {k: unquote(v) for k, v in m.groupdict().items()}
        raise DiscoveryError(404, f"The requested URL {raw_path} was not found on this server.")

    def check_query(self, method: ApiMethod, params: Mapping[str, list[str]]) -> None:
        """Reject query parameters the method does not define, and values its types forbid."""
        for name, values in params.items():
            spec = method.query_params.get(name) or self._global_params.get(name)
            if spec is None:
                raise DiscoveryError(
                    400,
                    f'Invalid JSON payload received. Unknown name "{name}": Cannot bind query parameter. '
                    f"Field '{name}' could not be found in request message.",
                )
            if len(values) > 1 and not spec.get("repeated"):
                raise DiscoveryError(400, f"Invalid value at '{_snake(name)}': repeated values for a single field")
            for value in values:
                self._check_scalar(value, spec, _snake(name), from_query=True)

    def check_body(self, method: ApiMethod, body: Any) -> Any:
        """Reject a JSON body with fields or values the request message does not define.

        Returns the body with every field name in lowerCamelCase (Google also accepts the proto
        snake_case names), so handlers read one spelling.
        """
        if method.request_schema is None:
            if body not in (None, {}):
                raise DiscoveryError(400, "Invalid JSON payload received. Request body is not expected.")
            return body
        if body is None:
            return None
        return self._check_message(body, method.request_schema, "")

    def _check_message(self, value: Any, schema_name: str, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            where = f" at '{path}'" if path else ""
            raise DiscoveryError(
                400, f"Invalid JSON payload received. Expected an object{where} ({schema_name}), got {value!r:.80}."
            )
        properties: Mapping[str, Mapping[str, Any]] = self._schemas[schema_name].get("properties", {})
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = key if key in properties else _camel(key)
            spec = properties.get(name)
            if spec is None:
                where = f" at '{path}'" if path else ""
                raise DiscoveryError(
                    400, f'Invalid JSON payload received. Unknown name "{key}"{where}: Cannot find field.'
                )
            out[name] = self._check_value(item, spec, f"{path}.{_snake(name)}" if path else _snake(name))
        return out

    def _check_value(self, value: Any, spec: Mapping[str, Any], path: str) -> Any:
        if value is None:
            return None  # JSON null means "default" for every proto3 field
        ref = spec.get("$ref")
        if ref is not None:
            return self._check_message(value, ref, path)
        kind = spec.get("type")
        if kind == "array":
            if not isinstance(value, list):
                raise DiscoveryError(400, f"Invalid value at '{path}' (list), {value!r:.80}")
            return [self._check_value(item, spec.get("items", {}), f"{path}[{i}]") for i, item in enumerate(value)]
        if kind == "object":
            if not isinstance(value, dict):
                raise DiscoveryError(400, f"Invalid value at '{path}' (map), {value!r:.80}")
            extra = spec.get("additionalProperties")
            if extra is None:
                return value
            return {key: self._check_value(item, extra, f"{path}[{key!r}]") for key, item in value.items()}
        if kind != "any":
            self._check_scalar(value, spec, path, from_query=False)
        return value

    @staticmethod
    def _check_scalar(value: Any, spec: Mapping[str, Any], path: str, *, from_query: bool) -> None:
        kind = spec.get("type")
        bad = DiscoveryError(400, f"Invalid value at '{path}' ({kind}), {json.dumps(value)[:80]}")
        if kind == "boolean":
            if isinstance(value, bool):
                return
            if not (from_query and isinstance(value, str) and value.lower() in _TRUE_FALSE):
                raise bad
        elif kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise bad
            if isinstance(value, str) and not re.fullmatch(r"-?\d+", value):
                raise bad
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise bad
            if isinstance(value, str):
                try:
                    float(value)
                except ValueError:
                    raise bad from None
        elif kind == "string":
            if not isinstance(value, str):
                raise bad
            enum = spec.get("enum")
            if enum is not None and value not in enum:
                raise bad
