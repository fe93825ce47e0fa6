"""docs/reference/api.md: every operation of the HTTP API, from its OpenAPI document."""

import json
from typing import Any

from workers.cli.docgen.markdown import GENERATED_NOTE, cell, code, table

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
SCHEMA_PREFIX = "#/components/schemas/"

INTRO = """\
# HTTP API reference

{note}

Every operation the API serves, from its OpenAPI document (`/openapi.json`, which a
running API also shows as Swagger UI at `/docs` and ReDoc at `/redoc`). The
[HTTP API guide](../api.md) gives the calls by example.
"""


def api_page() -> str:
    from api.main import create_app

    return render_openapi(create_app().openapi())


def render_openapi(document: dict[str, Any]) -> str:
    info = document.get("info", {})
    lines = [INTRO.format(note=GENERATED_NOTE.format(source="the API's OpenAPI document"))]
    lines.append(
        f"**{info.get('title', '')} {info.get('version', '')}**: {info.get('summary', '')}"
    )
    lines.extend(["", str(info.get("description", "")).strip(), ""])
    lines.extend(_security_schemes(document))
    operations = list(_operations(document))
    tags = [tag["name"] for tag in document.get("tags", [])]
    tags += sorted({t for _, _, op in operations for t in op.get("tags", [])} - set(tags))
    descriptions = {tag["name"]: tag.get("description", "") for tag in document.get("tags", [])}
    for tag in [*tags, None]:
        chosen = [(m, p, op) for m, p, op in operations if _first_tag(op) == tag]
        if not chosen:
            continue
        lines.extend([f"## {tag or 'Other'}", ""])
        if descriptions.get(tag or ""):
            lines.extend([descriptions[tag or ""], ""])
        for method, path, operation in chosen:
            lines.extend(_operation(method, path, operation, document))
    lines.extend(_schemas(document))
    return "\n".join(lines).rstrip("\n") + "\n"


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path, item in document.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                found.append((method, path, item[method]))
    return found


def _first_tag(operation: dict[str, Any]) -> str | None:
    tags = operation.get("tags") or [None]
    return str(tags[0]) if tags[0] is not None else None


def _operation(method: str, path: str, op: dict[str, Any], document: dict[str, Any]) -> list[str]:
    title = op.get("summary") or f"{method.upper()} {path}"
    anchor = str(op.get("operationId") or f"{method}-{path}").lower()
    lines = [f"### {title} {{#{_anchor(anchor)}}}", "", f"`{method.upper()} {path}`", ""]
    details = [f"operationId {code(str(op['operationId']))}"] if op.get("operationId") else []
    security = op.get("security", document.get("security"))
    schemes = sorted({name for entry in security or [] for name in entry})
    if schemes:
        links = (f"[{name}](#{_anchor('security-' + name)})" for name in schemes)
        details.append("authentication: " + ", ".join(links))
    else:
        details.append("no authentication")
    lines.extend([" · ".join(details), ""])
    if op.get("description"):
        lines.extend([str(op["description"]).strip(), ""])
    parameters = op.get("parameters", [])
    if parameters:
        rows = [
            (
                code(str(p["name"])),
                str(p.get("in", "")),
                "yes" if p.get("required") else "no",
                cell(_schema_summary(p.get("schema", {}))),
                cell(str(p.get("description") or p.get("schema", {}).get("description", ""))),
            )
            for p in parameters
        ]
        lines.extend(["**Parameters**", ""])
        lines.extend([*table(("name", "in", "required", "type", "meaning"), rows), ""])
    body = op.get("requestBody")
    if body:
        lines.extend(_request_body(body))
    responses = op.get("responses", {})
    if responses:
        answers = [
            (code(str(status)), cell(str(answer.get("description", ""))), _answer_schema(answer))
            for status, answer in sorted(responses.items())
        ]
        lines.extend(["**Answers**", ""])
        lines.extend([*table(("status", "when", "body"), answers), ""])
    return lines


def _request_body(body: dict[str, Any]) -> list[str]:
    lines = ["**Body**" + (" (required)" if body.get("required") else " (optional)"), ""]
    if body.get("description"):
        lines.extend([str(body["description"]), ""])
    for media, content in body.get("content", {}).items():
        schema = content.get("schema", {})
        lines.extend([f"{code(media)}: {cell(_schema_summary(schema))}", ""])
        rows = _property_rows(schema)
        if rows:
            lines.extend([*table(("field", "type", "required", "meaning"), rows), ""])
        for example in schema.get("examples", [])[:3]:
            lines.extend(["```json", json.dumps(example), "```", ""])
    return lines


def _answer_schema(answer: dict[str, Any]) -> str:
    kinds = []
    for media, content in answer.get("content", {}).items():
        kinds.append(f"{code(media)} {cell(_schema_summary(content.get('schema', {})))}".strip())
    return "; ".join(kinds) or "-"


def _schema_summary(schema: dict[str, Any]) -> str:
    """A schema in a few words: its type, or a link to the named schema it refers to."""
    if "$ref" in schema:
        name = str(schema["$ref"]).removeprefix(SCHEMA_PREFIX)
        return f"[{name}](#{_anchor('schema-' + name)})"
    for combiner in ("anyOf", "oneOf"):
        if combiner in schema:
            parts = [_schema_summary(s) for s in schema[combiner]]
            return " or ".join(p for p in parts if p)
    kind = str(schema.get("type", ""))
    if kind == "array":
        return f"array of {_schema_summary(schema.get('items', {})) or 'any'}"
    if kind == "object" and schema.get("title"):
        kind = f"object ({schema['title']})"
    extras = []
    if "enum" in schema:
        extras.append("one of " + ", ".join(code(json.dumps(v)) for v in schema["enum"]))
    if "pattern" in schema:
        extras.append(f"pattern {code(str(schema['pattern']))}")
    if "format" in schema:
        extras.append(str(schema["format"]))
    for key, word in (("minimum", "≥"), ("maximum", "≤"), ("maxLength", "length ≤")):
        if key in schema:
            extras.append(f"{word} {schema[key]}")
    return ", ".join([kind, *extras]) if kind else ", ".join(extras)


def _property_rows(schema: dict[str, Any]) -> list[tuple[str, ...]]:
    required = set(schema.get("required", []))
    rows: list[tuple[str, ...]] = []
    for name, prop in schema.get("properties", {}).items():
        meaning = str(prop.get("description", ""))
        if "default" in prop:
            meaning += f" (default {code(json.dumps(prop['default']))})"
        rows.append(
            (
                code(name),
                cell(_schema_summary(prop)),
                "yes" if name in required else "no",
                cell(meaning),
            )
        )
    return rows


def _security_schemes(document: dict[str, Any]) -> list[str]:
    schemes = document.get("components", {}).get("securitySchemes", {})
    if not schemes:
        return []
    lines = ["## Authentication", ""]
    for name, scheme in sorted(schemes.items()):
        lines.extend([f"### {name} {{#{_anchor('security-' + name)}}}", ""])
        where = [f"type {code(str(scheme.get('type', '')))}"]
        if "in" in scheme:
            where.append(f"in the {scheme['in']} {code(str(scheme.get('name', '')))}")
        if "scheme" in scheme:
            where.append(f"scheme {code(str(scheme['scheme']))}")
        lines.extend([", ".join(where), ""])
        if scheme.get("description"):
            lines.extend([str(scheme["description"]).strip(), ""])
    return lines


def _schemas(document: dict[str, Any]) -> list[str]:
    schemas = document.get("components", {}).get("schemas", {})
    if not schemas:
        return []
    lines = ["## Schemas", ""]
    for name, schema in sorted(schemas.items()):
        lines.extend([f"### {name} {{#{_anchor('schema-' + name)}}}", ""])
        if schema.get("description"):
            lines.extend([str(schema["description"]).strip(), ""])
        rows = _property_rows(schema)
        if rows:
            lines.extend([*table(("field", "type", "required", "meaning"), rows), ""])
        else:
            lines.extend([cell(_schema_summary(schema)), ""])
    return lines


def _anchor(text: str) -> str:
    """An HTML id from an operationId or schema name: lower case, `-` for the rest."""
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
