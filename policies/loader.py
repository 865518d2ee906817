"""Loading policy files: YAML validated node by node against the model, so every problem
is reported at its file:line:column; `extends` chains resolved and merged.

Merge rules (documented in policies/README.md): a child's mapping is merged key by key
into its parent's (recursively, and `audit.rules` by rule name); every other value, lists
included, replaces the parent's. Paths in a policy are relative to the file that names them."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import re
import stat
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from pysbx.images.regular import read_regular_file
from pysbx.policies import model
from pysbx.policies.errors import PolicyError, Problem
from pysbx.policies.values import format_egress, normalize_capability, parse_duration, parse_egress, parse_size, suggest

if TYPE_CHECKING:
    from pysbx.policies.diff import Change

BUILTIN_DIR = Path(__file__).resolve().parent
BUILTINS = ("strict", "baseline", "permissive")
_PATH_FIELDS = {("signing", "keys"), ("signing", "trusted_root"), ("sandbox", "seccomp", "profile")}
_BUILTIN_PROFILES = {"default", "strict", "unconfined"}
_INVALID = object()
_MAX_CHAIN = 8

Location = tuple[str, int, int]
FieldPath = tuple[str, ...]


@dataclass(frozen=True)
class LoadedPolicy:
    policy: model.Policy
    chain: list[str]  # the files, the named one first, then what it extends
    explicit: dict[str, Any]  # only what the files set, merged (for `policy show`)
    locations: dict[FieldPath, Location]


def builtin_path(name: str) -> Path:
    return BUILTIN_DIR / f"{name}.yaml"


def resolve_reference(reference: str, relative_to: Path) -> Path:
    if reference in BUILTINS:
        return builtin_path(reference)
    return (relative_to / reference).resolve()


def load_policy(reference: str | Path, syscall_known: Callable[[str], bool] | None = None) -> LoadedPolicy:
    """Load NAME or PATH with everything it extends; raise PolicyError listing every problem."""
    path = resolve_reference(str(reference), Path.cwd())
    return _load(path, [], syscall_known or _libseccomp_knows)


def load_policy_text(
    text: str, label: str, base: Path, syscall_known: Callable[[str], bool] | None = None
) -> LoadedPolicy:
    """Load a policy read elsewhere (standard input, `git show REV:path` through a pipe):
    `label` names it in problems, and what it refers to (extends, keys, a seccomp profile)
    is resolved relative to `base`."""
    if len(text.encode()) > MAX_POLICY_BYTES:
        raise PolicyError([Problem(label, 1, 1, f"the policy is larger than {MAX_POLICY_BYTES} bytes")])
    return _load_text(label, base, text, [], syscall_known or _libseccomp_knows)


def _load(path: Path, seen: list[Path], syscall_known: Callable[[str], bool]) -> LoadedPolicy:
    return _load_text(str(path), path.parent, _read_policy(path), seen, syscall_known)


def _load_text(
    label: str, base: Path, text: str, seen: list[Path], syscall_known: Callable[[str], bool]
) -> LoadedPolicy:
    path = Path(label)
    if path in seen:
        raise PolicyError([Problem(label, 1, 1, "extends itself in a cycle: " + " -> ".join(map(str, [*seen, path])))])
    if len(seen) > _MAX_CHAIN:
        raise PolicyError([Problem(label, 1, 1, f"extends chain deeper than {_MAX_CHAIN}")])
    parser = _Parser(label, base, syscall_known)
    explicit = parser.parse_document(_compose(text, label))
    if parser.problems:
        raise PolicyError(parser.problems)
    chain = [label]
    locations = parser.locations
    parent_ref = explicit.pop("extends", None)
    if parent_ref is not None:
        parent_path = resolve_reference(parent_ref, base)
        if not _is_regular_file(parent_path):
            line, column = parser.locations[("extends",)][1:]
            raise PolicyError(
                [Problem(label, line, column, f"extends {parent_ref!r}: no such built-in policy or file")]
            )
        parent = _load(parent_path, [*seen, path], syscall_known)
        explicit = merge(model.Policy, parent.explicit, explicit)
        chain += parent.chain
        locations = {**parent.locations, **locations}
    policy = build(model.Policy, explicit)
    problems = contradictions(policy, locations, chain)
    if problems:
        raise PolicyError(problems)
    return LoadedPolicy(policy, chain, explicit, locations)


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:  # missing, or a name too long to be one
        return False


MAX_POLICY_BYTES = 1 << 20  # a policy is a page of YAML; 1 MiB is generous


def _read_policy(path: Path) -> str:
    """A policy file, read as a regular file (a FIFO or /dev/zero named as a policy is an
    error, not a hang or an exhausted memory), bounded."""
    label = str(path)
    try:
        return read_regular_file(label, MAX_POLICY_BYTES, follow=True).decode("utf-8")
    except ValueError as error:
        if isinstance(error, UnicodeDecodeError):
            raise PolicyError([Problem(label, 1, 1, "the policy is not UTF-8 text")]) from None
        raise PolicyError([Problem(label, 1, 1, f"the policy is larger than {MAX_POLICY_BYTES} bytes")]) from None
    except OSError as error:
        raise PolicyError([Problem(label, 1, 1, f"cannot read the policy: {error.strerror}")]) from None


def _compose(text: str, label: str) -> yaml.Node:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise PolicyError([Problem(label, line, column, f"not valid YAML: {error.problem}")]) from None
    except yaml.YAMLError as error:
        raise PolicyError([Problem(label, 1, 1, f"not valid YAML: {error}")]) from None
    except RecursionError:  # PyYAML's composer recurses once per level of nesting
        raise PolicyError([Problem(label, 1, 1, "not valid YAML: nested too deeply")]) from None
    if node is None:
        raise PolicyError([Problem(label, 1, 1, "the policy is empty; it needs at least 'version: 1'")])
    return node


def _libseccomp_knows(name: str) -> bool:
    from pysbx.policies.seccomp import syscall_known

    return bool(syscall_known(name))


class _Parser:
    """Turns YAML nodes into plain values checked against the model's type hints."""

    def __init__(self, label: str, base: Path, syscall_known: Callable[[str], bool]) -> None:
        self.label = label
        self.base = base
        self.syscall_known = syscall_known
        self.problems: list[Problem] = []
        self.locations: dict[FieldPath, Location] = {}

    def problem(self, node: yaml.Node, message: str) -> object:
        self.problems.append(Problem(self.label, node.start_mark.line + 1, node.start_mark.column + 1, message))
        return _INVALID

    def parse_document(self, node: yaml.Node) -> dict[str, Any]:
        parsed = self.partial(model.Policy, node, ())
        if parsed is _INVALID:
            return {}
        assert isinstance(parsed, dict)
        written = isinstance(node, yaml.MappingNode) and any(key.value == "version" for key, _ in node.value)
        if "version" not in parsed and not written:  # a wrong version was said where it is written
            self.problem(node, "'version: 1' is required")
        return parsed

    def partial(self, cls: type, node: yaml.Node, path: FieldPath) -> object:
        """A mapping node as a dict of only the keys it sets (for merging)."""
        if not isinstance(node, yaml.MappingNode):
            return self.problem(node, f"{_dotted(path) or 'the policy'}: expected a mapping of settings")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = get_type_hints(cls)
        parsed: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            where = _dotted((*path, str(key)))
            if key not in fields:
                self.problem(key_node, f"{where}: unknown key{suggest(str(key), list(fields))}")
                continue
            if key in parsed:
                self.problem(key_node, f"{where}: set twice in the same mapping")
                continue
            self.locations[(*path, key)] = (
                self.label,
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
            )
            value = self.value(hints[key], value_node, (*path, key))
            if value is not _INVALID:
                parsed[key] = value
        return parsed

    def complete(self, cls: type, node: yaml.Node, path: FieldPath) -> object:
        """A mapping node as a whole instance (list items are never merged)."""
        parsed = self.partial(cls, node, path)
        if parsed is _INVALID:
            return _INVALID
        assert isinstance(parsed, dict)
        missing = [f.name for f in dataclasses.fields(cls) if _is_required(f) and f.name not in parsed]
        if missing:
            return self.problem(node, f"{_dotted(path)}: {', '.join(missing)} is required")
        try:
            return build(cls, parsed)
        except ValueError as error:
            return self.problem(node, f"{_dotted(path)}: {error}")

    def value(self, hint: Any, node: yaml.Node, path: FieldPath) -> object:
        where = _dotted(path)
        origin = get_origin(hint)
        if origin in (Union, types.UnionType):
            options = [arg for arg in get_args(hint) if arg is not type(None)]
            if _is_null(node):
                return None
            hint, origin = options[0], get_origin(options[0])
        if dataclasses.is_dataclass(hint):
            return self.partial(hint, node, path)  # type: ignore[arg-type]
        if origin is tuple:
            return self.sequence(get_args(hint)[0], node, path)
        if origin is dict:
            return self.mapping(get_args(hint)[1], node, path)
        if not isinstance(node, yaml.ScalarNode):
            return self.problem(node, f"{where}: expected {_describe(hint)}, got a {_node_kind(node)}")
        return self.scalar(hint, node, path)

    def sequence(self, item_hint: Any, node: yaml.Node, path: FieldPath) -> object:
        if not isinstance(node, yaml.SequenceNode):
            return self.problem(node, f"{_dotted(path)}: expected a list, got a {_node_kind(node)}")
        items = []
        for index, item_node in enumerate(node.value):
            item_path = (*path[:-1], f"{path[-1]}[{index}]")
            self.locations[item_path] = (self.label, item_node.start_mark.line + 1, item_node.start_mark.column + 1)
            if dataclasses.is_dataclass(item_hint):
                item = self.complete(item_hint, item_node, item_path)  # type: ignore[arg-type]
            else:
                item = self.value(item_hint, item_node, item_path)
            if item is not _INVALID:
                items.append(item)
        return tuple(items)

    def mapping(self, value_hint: Any, node: yaml.Node, path: FieldPath) -> object:
        if not isinstance(node, yaml.MappingNode):
            return self.problem(node, f"{_dotted(path)}: expected a mapping, got a {_node_kind(node)}")
        parsed: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            value = self.value(value_hint, value_node, (*path, key))
            if value is not _INVALID:
                parsed[key] = value
        return parsed

    def scalar(self, hint: Any, node: yaml.ScalarNode, path: FieldPath) -> object:
        where = _dotted(path)
        tag, text = node.tag.rsplit(":", 1)[-1], node.value
        if get_origin(hint) is Literal:
            choices = get_args(hint)
            value: object = _yaml_value(node) if tag == "int" else text
            if value not in choices:
                listed = ", ".join(map(str, choices))
                return self.problem(
                    node,
                    f"{where}: {text!r} is not one of {listed}{suggest(text, [str(c) for c in choices])}",
                )
            return value
        if hint is bool:
            flag = _yaml_value(node) if tag == "bool" else None
            if not isinstance(flag, bool):
                return self.problem(node, f"{where}: expected true or false, got {text!r}")
            return flag
        if hint is int:
            number = _yaml_value(node) if tag == "int" else None
            if not isinstance(number, int) or number < 0:
                return self.problem(node, f"{where}: expected a whole number, got {text!r}")
            return number
        if hint is float:
            real = _as_float(_yaml_value(node)) if tag in ("int", "float") else None
            if real is None:
                return self.problem(node, f"{where}: expected a number, got {text!r}")
            return real
        if hint is model.Size:
            size = _yaml_value(node) if tag == "int" else parse_size(text) if tag == "str" else None
            if not isinstance(size, int) or size < 0:
                return self.problem(node, f"{where}: expected a size such as 512Mi, 1G or 4096, got {text!r}")
            return size
        if hint is model.Duration:
            seconds = _as_float(_yaml_value(node)) if tag in ("int", "float") else None
            seconds = parse_duration(text) if tag == "str" else seconds
            if seconds is None:
                return self.problem(node, f"{where}: expected a duration such as 500ms, 30s, 5m or 1h, got {text!r}")
            return seconds
        if hint is model.Capability:
            name = normalize_capability(text)
            if name is None:
                candidates = [c[4:] for c in model.LINUX_CAPABILITIES]
                hint_text = suggest(text.upper().removeprefix("CAP_"), candidates)
                return self.problem(node, f"{where}: {text!r} is not a Linux capability{hint_text}")
            return name
        if hint is model.Syscall:
            if not self.syscall_known(text):
                return self.problem(node, f"{where}: {text!r} is not a system call that libseccomp knows")
            return text
        if hint is model.IPAddress:
            address = _ip_address(text) if tag in ("str", "int") else None  # 1:2:3:4:5:6:7:8 is an int in YAML 1.1
            if address is None:
                return self.problem(node, f"{where}: {text!r} is not an IP address such as 127.0.0.1 or '::1'")
            return address
        if hint is model.Egress:
            rule = parse_egress(text) if tag == "str" else None
            if rule is None:
                return self.problem(
                    node, f"{where}: {text!r} is not CIDR[:PORT[-PORT]] such as 10.0.0.0/8:443 or '[fd00::/8]:53'"
                )
            return format_egress(rule)
        if hint is model.Port:
            port = _yaml_value(node) if tag == "int" else None
            if not isinstance(port, int) or not 1 <= port <= 65535:
                return self.problem(node, f"{where}: expected a port from 1 to 65535, got {text!r}")
            return port
        if hint is datetime.date:
            parsed = _yaml_value(node) if tag == "timestamp" else None
            if isinstance(parsed, datetime.date):
                return parsed.date() if isinstance(parsed, datetime.datetime) else parsed
            return self.problem(node, f"{where}: expected a date such as 2027-01-31, got {text!r}")
        if hint is str:
            if tag not in ("str", "int"):
                return self.problem(node, f"{where}: expected a string, got {text!r}")
            is_path = tuple(part.split("[")[0] for part in path) in _PATH_FIELDS
            if (is_path or path == ("extends",)) and "\0" in text:
                return self.problem(node, f"{where}: a file name cannot hold a NUL byte")
            if is_path:
                return self.relative_path(text, path)
            return text
        raise TypeError(f"policy model field {where} has an unsupported type {hint!r}")

    def relative_path(self, text: str, path: FieldPath) -> str:
        if path == ("sandbox", "seccomp", "profile") and text in _BUILTIN_PROFILES:
            return text
        return str((self.base / text).resolve())


_CONSTRUCTOR = yaml.SafeLoader("")


def _yaml_value(node: yaml.ScalarNode) -> object:
    """What PyYAML makes of a scalar by its tag, as the YAML 1.1 a user writes means it
    (`010` is 8, `1:30` is 90, `.inf` is a float), or None when the text cannot hold its
    tag (an explicit `!!int abc`, the date 2027-13-45)."""
    construct = _CONSTRUCTOR.yaml_constructors.get(node.tag)
    if construct is None:
        return None
    if node.tag.endswith(":timestamp") and not _CONSTRUCTOR.timestamp_regexp.match(node.value):
        return None  # PyYAML would fail on the missing match with an AttributeError
    try:
        return construct(_CONSTRUCTOR, node)
    except (ValueError, KeyError, yaml.YAMLError):
        return None


def _ip_address(text: str) -> str | None:
    """An IP address literal as ipaddress writes it (`0::1` is `::1`), so that equal addresses
    are one; None for anything else (a host name, 300.1.1.1, a network with a prefix)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _as_float(value: object) -> float | None:
    """A YAML number as a float; None for anything else, and for an integer too large for
    one (float() raises OverflowError)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _is_required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    return "list" if isinstance(node, yaml.SequenceNode) else "value"


def _describe(hint: Any) -> str:
    names = {
        bool: "true or false", int: "a whole number", float: "a number", str: "a string",
        model.IPAddress: "an IP address (quote an IPv6 one: '::')", model.Port: "a port from 1 to 65535",
    }  # fmt: skip
    return names.get(hint, "a single value")


def _dotted(path: FieldPath) -> str:
    return ".".join(path)


def build(cls: type, parsed: dict[str, Any]) -> Any:
    """An instance of `cls` from parsed values, defaults filling what is unset."""
    hints = get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in parsed:
            continue
        value, hint = parsed[f.name], hints[f.name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = build(hint, value)  # type: ignore[arg-type]
        elif get_origin(hint) is dict and dataclasses.is_dataclass(get_args(hint)[1]):
            value = {k: build(get_args(hint)[1], v) if isinstance(v, dict) else v for k, v in value.items()}
        values[f.name] = value
    instance = cls(**values)
    _check_instance(instance)
    return instance


def _check_instance(instance: object) -> None:
    """Rules within one object that types alone cannot say."""
    if isinstance(instance, model.Identity):
        if (instance.subject is None) == (instance.subject_regex is None):
            raise ValueError("give exactly one of subject and subject_regex")
        if instance.subject_regex is not None:
            try:
                re.compile(instance.subject_regex)
            except re.error as error:
                raise ValueError(f"subject_regex is not a valid regular expression ({error})") from None
    if isinstance(instance, model.Ignore) and not instance.reason.strip():
        raise ValueError("reason must say why the finding is ignored")
    if isinstance(instance, model.Tmpfs) and not re.fullmatch(r"[0-7]{3,4}", instance.mode):
        raise ValueError(f"mode {instance.mode!r} is not an octal mode such as 1777")


def merge(cls: type, parent: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """Child over parent: mappings merge key by key, everything else replaces."""
    hints = get_type_hints(cls)
    merged = dict(parent)
    for key, value in child.items():
        hint = hints[key]
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            if dataclasses.is_dataclass(hint):
                merged[key] = merge(hint, merged[key], value)  # type: ignore[arg-type]
            elif get_origin(hint) is dict and dataclasses.is_dataclass(get_args(hint)[1]):
                rules = dict(merged[key])
                for name, settings in value.items():
                    rules[name] = merge(get_args(hint)[1], rules.get(name, {}), settings)
                merged[key] = rules
            else:
                merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def contradictions(policy: model.Policy, locations: dict[FieldPath, Location], chain: list[str]) -> list[Problem]:
    """Settings that each parse but cannot hold together."""
    problems: list[Problem] = []
    sandbox = policy.sandbox

    def at(path: FieldPath, message: str) -> None:
        for length in range(len(path), 0, -1):
            if path[:length] in locations:
                problems.append(Problem(*locations[path[:length]], message))
                return
        problems.append(Problem(chain[0], 1, 1, message))

    own = set(sandbox.namespaces)
    if sandbox.network == "host" and "network" in own:
        at(
            ("sandbox", "network"),
            "network: host needs the host's network namespace, but sandbox.namespaces lists network",
        )
    if sandbox.network != "host" and "network" not in own:
        at(
            ("sandbox", "network"),
            f"network: {sandbox.network} needs a network namespace of its own; add network to sandbox.namespaces",
        )
    if sandbox.egress is not None and "CAP_NET_ADMIN" in model.granted_capabilities(
        sandbox.capabilities, sandbox.privileged
    ):
        at(
            ("sandbox", "egress"),
            "egress: an allow-list cannot hold while sandbox.capabilities grants NET_ADMIN (or privileged is true): "
            "a container could remove it",
        )
    for flag, namespace in (("host_pid", "pid"), ("host_ipc", "ipc"), ("host_uts", "uts")):
        if getattr(sandbox, flag) and namespace in own:
            at(("sandbox", flag), f"{flag}: true contradicts sandbox.namespaces, which lists {namespace}")
    for name in sandbox.limits.required:
        if getattr(sandbox.limits, name) is None:
            at(
                ("sandbox", "limits", "required"),
                f"limits.required names {name}, but sandbox.limits.{name} is not set",
            )
    if str(builtin_path("strict")) in chain[1:]:
        from pysbx.policies.diff import diff_policies, loosens

        strict = build(model.Policy, _builtin_explicit("strict"))
        for change in diff_policies(strict, policy):
            if loosens(change) and not (
                _names_whom_strict_leaves_to_trust(strict, change) or _is_expiring_exception(policy, change)
            ):
                at(change.location, f"extends strict but loosens it: {change.describe()}")
    return problems


_TRUST_FIELDS = {("signing", "identities"), ("signing", "keys"), ("signing", "trusted_root")}


def _names_whom_strict_leaves_to_trust(strict: model.Policy, change: Change) -> bool:
    """Strict trusts no signer, so that a policy extending it names its own: its first keys,
    identities or trusted root are no loosening of strict (`policy diff` still marks them
    loosening against any other policy)."""
    return change.path in _TRUST_FIELDS and not getattr(strict.signing, change.path[-1])


def _is_expiring_exception(policy: model.Policy, change: Change) -> bool:
    """An added audit.ignore entry with an expiry date: a reviewed, time-bound exception to the
    gate (its reason is required), not a loosening of what strict enforces; one without
    `expires` is an error under strict. `policy diff` still marks every such entry `loosens`."""
    if change.path != ("audit", "ignore") or change.index is None or not change.item.startswith("+"):
        return False
    return policy.audit.ignore[change.index].expires is not None


def _builtin_explicit(name: str) -> dict[str, Any]:
    path = builtin_path(name)
    parser = _Parser(str(path), BUILTIN_DIR, lambda _: True)
    return parser.parse_document(_compose(_read_policy(path), str(path)))
