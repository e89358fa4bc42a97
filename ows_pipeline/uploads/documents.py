"""JSON and YAML uploads: a list of flat records, read with every value kept as written.

Numbers stay the text they were written as (`0042` is not 42, `12:30` is not 750, `1e400` is
not infinity) and are typed later by the declared schema. YAML is read with a loader that
resolves no implicit types at all (no booleans, numbers, base-60 or timestamps; `null`, `~`
and an empty value are null) and refuses every tag (`!!python/...` included).

Work and memory are bounded while the document is built, not after: values are counted as
they are read (a YAML alias counts as every value it repeats, so an expansion bomb stops at
the limit without being expanded), nesting is limited, and reading stops after
`max_parse_seconds`.
"""

from __future__ import annotations

import json
import re
import time

from ows_pipeline.uploads.limits import UploadLimits
from ows_pipeline.uploads.problems import FileRejected, Problem, reject, shown
from ows_pipeline.uploads.parsed import ParsedTable, decode_text, too_many_rows

MAX_DEPTH = 16  # a list of records of values needs 3
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPENS = bytes.maketrans(b"{", b"[")
_SHAPE = {
    "JSON": "a JSON array of objects: [{...}, {...}]",
    "YAML": "a YAML list of mappings (- key: value)",
}


def _too_many_values(what: str, limits: UploadLimits, row=None) -> FileRejected:
    return reject(
        "too_many_values",
        f"the {what} document holds more than {limits.max_values:,} values (anchors and aliases counted as "
        "every value they repeat): far more than a list of records of this size needs, or an expansion bomb",
        "write the values out in full without aliases, split the file, or send it as CSV "
        "(raise OWS_UPLOAD_MAX_VALUES for a genuinely larger list)",
        row=row,
    )


def _too_slow(what: str, limits: UploadLimits, row=None) -> FileRejected:
    return reject(
        "too_slow_to_read",
        f"reading the {what} file took more than {limits.max_parse_seconds} seconds",
        "send a large list as CSV (read many times faster), or split it "
        "(or raise OWS_UPLOAD_MAX_PARSE_SECONDS)",
        row=row,
    )


def _too_deep(what: str, row=None) -> FileRejected:
    return reject(
        "too_deeply_nested",
        f"the {what} document nests lists or mappings more than {MAX_DEPTH} levels deep; an upload is a "
        "flat list of records",
        f"write the file as {_SHAPE[what]}, one plain value per field",
        row=row,
    )


def records_table(records, what: str, limits: UploadLimits) -> ParsedTable:
    """A list of flat mappings as a table: columns in order of first appearance; absent keys are null."""
    shape = _SHAPE[what]
    if not isinstance(records, list):
        found = {dict: "a mapping (an object)", str: "a single value", type(None): "empty"}.get(
            type(records), "a single value"
        )
        raise reject("not_a_list", f"the {what} document is {found}, not a list of records", f"write the file as {shape}")
    if len(records) > limits.max_rows:
        raise too_many_rows(limits, limits.max_rows + 1)
    columns: dict[str, int] = {}
    problems: list[Problem] = []
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            problems.append(
                Problem(
                    rule="not_a_record",
                    message=f"item {number} is {_what(record)}, not a record (key: value pairs)",
                    fix=f"write the file as {shape}",
                    row=number,
                    value=shown(record),
                )
            )
        else:
            for key, value in record.items():
                if isinstance(value, (list, dict)):
                    problems.append(
                        Problem(
                            rule="nested_value",
                            message=f"the value is {_what(value)}; only plain values are accepted",
                            fix="put one plain value (text, number, date, true/false or null) in each field",
                            row=number,
                            field=key,
                            value=shown(value),
                        )
                    )
                if key not in columns:
                    columns[key] = len(columns)
                    if len(columns) > limits.max_columns:
                        raise reject(
                            "too_many_columns",
                            f"the records use more than {limits.max_columns} different fields",
                            "remove unrelated fields, or raise OWS_UPLOAD_MAX_COLUMNS",
                            row=number,
                        )
        if len(problems) >= limits.max_problems:
            break
    if problems:
        raise FileRejected(problems)
    names = list(columns)
    rows = [tuple(record.get(name) for name in names) for record in records]
    return ParsedTable(columns=names, rows=rows, row_numbers=list(range(1, len(rows) + 1)), row_unit="item")


def _what(value) -> str:
    if isinstance(value, list):
        return f"a list of {len(value):,} items"
    if isinstance(value, dict):
        return "a mapping"
    return "a single value"


# --- JSON ---------------------------------------------------------------------------------


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs):
    record = {}
    for key, value in pairs:
        if key in record:
            raise _DuplicateKey(key)
        record[key] = value
    return record


def _no_constant(name):
    raise ValueError(f"{name} is not a number")


def refuse_json_shape(data: bytes, limits: UploadLimits) -> None:
    """Refuse, before building anything, JSON whose shape alone exceeds the limits: nesting, objects
    (one per record), lists (records hold none) and values, counted on the text with its strings
    blanked out (so that commas and brackets inside strings do not count)."""
    skeleton = _JSON_STRING.sub(b'""', data)
    opens = skeleton.translate(_OPENS, b" \t\r\n").replace(b'"":', b"")
    if b"[" * (MAX_DEPTH + 1) in opens:  # that many lists or objects opened one inside the other
        raise _too_deep("JSON")
    objects, lists = skeleton.count(b"{"), skeleton.count(b"[")
    if objects > limits.max_rows:
        raise too_many_rows(limits, limits.max_rows + 1)
    if lists > limits.max_problems + 1:
        raise reject(
            "nested_value",
            f"the JSON document holds {lists - 1:,} lists inside its records; records hold plain values only",
            "put one plain value (text, number, date, true/false or null) in each field",
        )
    if 1 + objects + lists + skeleton.count(b",") > limits.max_values:
        raise _too_many_values("JSON", limits)


def parse_json(data: bytes, limits: UploadLimits) -> ParsedTable:
    """A JSON array of flat objects; numbers kept as written; duplicate field names, NaN and Infinity refused."""
    text = decode_text(data, "JSON file")
    refuse_json_shape(data, limits)
    try:
        records = json.loads(
            text, object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant, parse_int=str, parse_float=str
        )
    except _DuplicateKey as exc:
        raise reject(
            "duplicate_field",
            f"an object names the field '{shown(str(exc))}' twice",
            "keep one value per field in each object",
            field=shown(str(exc)),
        ) from None
    except json.JSONDecodeError as exc:
        raise reject(
            "json_syntax",
            f"the JSON text is invalid at line {exc.lineno}, column {exc.colno}: {exc.msg}",
            "check the file with a JSON validator; it must be an array of objects",
            row=exc.lineno,
        ) from None
    except RecursionError:
        raise _too_deep("JSON") from None
    except ValueError as exc:
        raise reject(
            "json_syntax",
            f"the JSON text holds {shown(str(exc))}",
            "write plain numbers (no NaN or Infinity); leave a value empty with null",
        ) from None
    return records_table(records, "JSON", limits)


# --- YAML ---------------------------------------------------------------------------------


def _yaml_loader_class():
    """A loader whose every scalar is text, except merge keys (`<<`) and null (`~`, `null`, empty)."""
    import yaml
    from yaml.composer import Composer
    from yaml.constructor import SafeConstructor
    from yaml.resolver import BaseResolver

    try:
        from yaml._yaml import CParser as Parser  # libyaml's parser: the same events, many times faster
    except ImportError:  # pragma: no cover - PyYAML built without libyaml
        from yaml.parser import Parser
        from yaml.reader import Reader
        from yaml.scanner import Scanner

        class Parser(Reader, Scanner, Parser):  # noqa: F811
            def __init__(self, stream):
                Reader.__init__(self, stream)
                Scanner.__init__(self)
                yaml.parser.Parser.__init__(self)

    class TextResolver(BaseResolver):
        pass

    TextResolver.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^<<$"), ["<"])
    TextResolver.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"),
                                       ["~", "n", "N", ""])

    class TextLoader(Composer, Parser, SafeConstructor, TextResolver):
        """Counts values (aliases as their whole expansion), depth and time while composing."""

        def __init__(self, stream, limits: UploadLimits):
            Parser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            TextResolver.__init__(self)
            self.limits = limits
            self.values = 0
            self.aliases = 0
            self.depth = 0
            self.weights: dict[str, int] = {}
            self.deadline = time.monotonic() + limits.max_parse_seconds

        def _line(self, event) -> int:
            return event.start_mark.line + 1 if event.start_mark else None

        def _count(self, weight: int, event) -> None:
            self.values += weight
            if self.values > self.limits.max_values:
                raise _too_many_values("YAML", self.limits, row=self._line(event))
            if self.values % 4096 < weight and time.monotonic() > self.deadline:
                raise _too_slow("YAML", self.limits, row=self._line(event))

        def compose_node(self, parent, index):
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent):
                self.aliases += 1
                if self.aliases > self.limits.max_yaml_aliases:
                    raise reject(
                        "yaml_aliases",
                        f"the YAML file uses more than {self.limits.max_yaml_aliases} aliases (*name): "
                        "an expansion bomb, or a file that is not plain data",
                        "write the values out in full instead of using anchors (&) and aliases (*)",
                        row=self._line(event),
                    )
                self._count(self.weights.get(event.anchor, 1), event)
                return super().compose_node(parent, index)
            tag = getattr(event, "tag", None)
            if tag not in (None, "!", "tag:yaml.org,2002:str"):
                tag = tag.replace("tag:yaml.org,2002:", "!!")  # as it is written in the file
                raise reject(
                    "yaml_tag",
                    f"line {self._line(event)} carries the YAML tag '{shown(tag)}': uploads are plain data, and "
                    "tags (which can name program code) are never read",
                    f"remove '{shown(tag)}' from line {self._line(event)} and write the plain value",
                    row=self._line(event),
                )
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise _too_deep("YAML", row=self._line(event))
            self._count(1, event)
            before = self.values
            node = super().compose_node(parent, index)
            self.depth -= 1
            anchor = getattr(event, "anchor", None)
            if anchor is not None:
                self.weights[anchor] = self.values - before + 1
            return node

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _value in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    raise reject(
                        "field_name",
                        f"line {key_node.start_mark.line + 1} uses a list or mapping as a field name",
                        "use plain text as each field name",
                        row=key_node.start_mark.line + 1,
                    )
                key = key_node.value
                if key != "<<" and key in seen:
                    raise reject(
                        "duplicate_field",
                        f"a mapping names the field '{shown(key)}' twice (line {key_node.start_mark.line + 1})",
                        "keep one value per field in each record",
                        field=shown(key),
                    )
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return TextLoader


def parse_yaml(data: bytes, limits: UploadLimits) -> ParsedTable:
    """A YAML list of flat mappings; every value is text as written (or null), typed later by the schema."""
    import yaml

    text = decode_text(data, "YAML file")
    loader = _yaml_loader_class()(text, limits)
    try:
        records = loader.get_single_data()
    except FileRejected:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = shown(str(exc.problem or exc.context or "not YAML"))
        if "nesting depth" in problem:
            raise _too_deep("YAML", row=line) from None
        raise reject(
            "yaml_syntax",
            f"the YAML text is invalid{f' at line {line}' if line else ''}: {problem}",
            _yaml_fix(problem),
            row=line,
        ) from None
    except RecursionError:
        raise _too_deep("YAML") from None
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        raise reject(
            "yaml_syntax", f"the YAML text cannot be read: {shown(str(exc))}", "write a plain list of mappings"
        ) from None
    finally:
        loader.dispose()
    return records_table(records, "YAML", limits)


def _yaml_fix(problem: str) -> str:
    if "alias" in problem or "anchor" in problem:
        return "define each anchor (&name) before the aliases (*name) that repeat it, or write the values in full"
    if "document" in problem:
        return "keep one document in the file (no second '---' with data)"
    if "tab" in problem:
        return "indent with spaces, not tabs"
    return "check the indentation, and quote values that contain ': ' or ' #' or start with a special character"
