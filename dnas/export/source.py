"""Write a built network as standalone Python: the source dnas runs, plus the network's structure as data.

The ``python`` artifact is not a template that restates our ops. It is assembled from the network itself:

* **code**: the source of every class in the module tree that is not part of torch (our ops and cells, a user's own
  ops and space), copied with :func:`inspect.getsource`. Only what the forward pass can reach is copied: ``forward``
  and the methods, module-level functions and constants it uses, found by walking their syntax trees. A class may
  replace a method for the discrete network through ``export_methods`` (e.g. a search space's ``cell_weights``,
  which is ``None`` in a discrete network); constructors are never copied, because
* **structure**: the module tree (class, plain attributes the copied code reads, parameter and buffer shapes, children)
  is written as a Python literal. ``build_model()`` re-creates each module with ``cls.__new__`` and
  ``nn.Module.__init__`` and restores those attributes, which is how ``torch.save`` would rebuild a pickled module,
  but as plain, reviewable data rather than pickled objects;
* **weights**: ``weights.pt`` (``state_dict``), read with ``torch.load(weights_only=True)``.

Anything the forward pass uses that is neither torch, the standard library modules in :data:`STDLIB`, nor source we
can copy (a closure, a lambda, an object of another library) is refused with an :class:`SourceError` naming it, and
the artifact is checked before it is written: the file is parsed, every data literal is compared with the value it
must hold, and the rebuilt network must give the model's outputs bit for bit on an example input.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import math
import textwrap
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from dnas.export.artifacts import ExportError

STDLIB = frozenset({"math", "itertools", "functools", "operator", "collections", "typing", "numbers", "warnings"})
"""Standard-library modules copied code may use (imported by ``model.py``)."""

_MODULE_INTERNALS = frozenset(nn.Module().__dict__) | {"_is_full_backward_hook"}
_BUILTINS = frozenset(dir(builtins))


class SourceError(ExportError):
    """A network that cannot be written as torch-only Python source; the message names what stands in the way."""


def is_torch_object(obj: Any) -> bool:
    """True for torch's own modules, classes and functions."""
    name = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None) or ""
    return name == "torch" or name.startswith("torch.")


def is_plain(value: Any) -> bool:
    """Data that ``repr`` writes as a literal of the same value.

    None, bool, int, finite float, str, and tuples, lists and dicts of them; exact types only, because a subclass may
    have a ``repr`` of its own.
    """
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return True
    if kind is float:
        return math.isfinite(value)
    if kind in (tuple, list):
        return all(is_plain(v) for v in value)
    if kind is dict:
        return all(type(k) in (str, int) and is_plain(v) for k, v in value.items())
    return False


# ---------------------------------------------------------------------------------------------- syntax helpers
def _dedented_source(obj: Any) -> str:
    try:
        return textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError) as err:
        raise SourceError(f"cannot read the source of {_label(obj)}: {err}") from None


def _label(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', repr(obj)))}"


def _function_node(source: str) -> ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef:
    node = ast.parse(source).body[0]
    assert isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    return node


def _free_names(node: ast.AST) -> set[str]:
    """Global names a function or class body reads (annotations excluded: ``model.py`` defers them)."""
    bound: set[str] = set()
    loaded: set[str] = set()

    def visit(n: ast.AST, in_annotation: bool = False) -> None:
        if isinstance(n, ast.Name):
            (bound if isinstance(n.ctx, (ast.Store, ast.Del)) else loaded).add(n.id) if not in_annotation else None
            return
        if isinstance(n, ast.arg):
            bound.add(n.arg)
            if n.annotation is not None:
                visit(n.annotation, True)
            return
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n is not node:
            bound.add(n.name)
        if isinstance(n, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in n.names)
        if isinstance(n, ast.ExceptHandler) and n.name:
            bound.add(n.name)
        for fname, value in ast.iter_fields(n):
            annotation = fname in ("annotation", "returns") or in_annotation
            for child in value if isinstance(value, list) else [value]:
                if isinstance(child, ast.AST):
                    visit(child, annotation)

    visit(node)
    return loaded - bound - _BUILTINS


def _self_attributes(node: ast.AST) -> set[str]:
    """Attributes read as ``self.<name>``."""
    return {
        n.attr
        for n in ast.walk(node)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self"
    }


def _uses_super(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "super" for n in ast.walk(node)
    )


# ---------------------------------------------------------------------------------------------- collecting code
@dataclass
class _Code:
    """What ``model.py`` defines: imports, constants, functions and flattened classes, in dependency order."""

    imports: dict[str, str] = field(default_factory=dict)  # bound name -> import statement
    constants: dict[str, Any] = field(default_factory=dict)
    definitions: dict[str, str] = field(default_factory=dict)  # name -> source
    owners: dict[str, Any] = field(default_factory=dict)  # name -> the object it was copied from
    class_attributes: dict[type, set[str]] = field(default_factory=dict)  # instance attributes the code reads


class SourceCollector:
    """Copies the source a module tree's forward pass needs (see the module docstring)."""

    def __init__(self) -> None:
        self.code = _Code()
        self._class_names: dict[type, str] = {}

    # -------------------------------------------------------------- names
    def _bind(self, name: str, obj: Any, where: str) -> None:
        """Make global ``name`` (read by code copied from ``where``) mean ``obj`` in ``model.py``."""
        owner = self.code.owners.get(name)
        if owner is not None:
            if owner is obj:
                return
            raise SourceError(
                f"two different objects are both called {name!r} in the exported code ({_label(owner)} and "
                f"{_label(obj)}, used by {where}); rename one of them"
            )
        if isinstance(obj, types.ModuleType):
            root = obj.__name__.split(".")[0]
            if not is_torch_object(obj) and root not in STDLIB:
                raise SourceError(
                    f"{where} uses module {obj.__name__!r}; exported code may import only torch and {sorted(STDLIB)}"
                )
            stmt = f"import {obj.__name__}" if obj.__name__ == name else f"import {obj.__name__} as {name}"
            self.code.imports[name] = stmt
        elif is_torch_object(obj) or getattr(obj, "__module__", "").split(".")[0] in STDLIB:
            module, attr = obj.__module__, getattr(obj, "__name__", None)
            import importlib

            if attr is None or getattr(importlib.import_module(module), attr, None) is not obj:
                raise SourceError(f"{where} uses {name!r} ({type(obj).__name__}), which cannot be imported by name")
            self.code.imports[name] = f"from {module} import {attr}" + ("" if attr == name else f" as {name}")
        elif is_plain(obj):
            self.code.constants[name] = obj
        elif isinstance(obj, type) and issubclass(obj, nn.Module):
            self.add_class(obj)
            if self._class_names[obj] != name:
                raise SourceError(f"{where} refers to class {_label(obj)} as {name!r}; use its own name")
        elif inspect.isfunction(obj) or isinstance(obj, type):
            if obj.__name__ == "<lambda>" or obj.__name__ != name or "<locals>" in obj.__qualname__:
                raise SourceError(
                    f"{where} uses {name!r} = {_label(obj)}, a lambda, closure or alias; exported code can only copy "
                    f"module-level functions and classes defined under their own name"
                )
            source = _dedented_source(obj)
            self.code.owners[name] = obj
            self._resolve(_function_node(source), obj, f"{_label(obj)}")
            self.code.definitions[name] = f"# from {obj.__module__}\n{source.strip()}"
            return
        else:
            raise SourceError(
                f"{where} uses {name!r}, a {type(obj).__name__} from {getattr(obj, '__module__', '?')}; exported code "
                "may use only torch, the standard library, plain constants and functions/classes whose source it copies"
            )
        self.code.owners[name] = obj

    def _resolve(self, node: ast.AST, owner: Any, where: str) -> None:
        namespace = getattr(owner, "__globals__", None)
        if namespace is None:
            namespace = vars(inspect.getmodule(owner))
        for name in sorted(_free_names(node)):
            if name not in namespace:
                raise SourceError(f"{where} reads the global name {name!r}, which its module does not define")
            self._bind(name, namespace[name], where)

    # -------------------------------------------------------------- classes
    def class_name(self, cls: type) -> str:
        """The expression ``model.py`` uses for ``cls`` (``nn.Conv2d`` for torch classes; copying others)."""
        if is_torch_object(cls):
            if getattr(nn, cls.__name__, None) is cls:
                return f"nn.{cls.__name__}"
            raise SourceError(
                f"{_label(cls)} is a torch class that is not in torch.nn; the python format cannot name it"
            )
        self.add_class(cls)
        return self._class_names[cls]

    def add_class(self, cls: type) -> None:
        """Copy ``cls`` flattened: its torch base class plus the methods its forward pass reaches."""
        if cls in self._class_names:
            return
        name = cls.__name__
        if not name.isidentifier():
            raise SourceError(f"class name {name!r} is not a Python identifier")
        self._class_names[cls] = name
        if name in self.code.owners and self.code.owners[name] is not cls:
            raise SourceError(f"two classes are called {name!r} ({_label(self.code.owners[name])}, {_label(cls)})")
        self.code.owners[name] = cls
        base = next(b for b in cls.__mro__ if is_torch_object(b))
        ours = [b for b in cls.__mro__ if not is_torch_object(b) and b is not object]
        overrides: dict[str, Callable] = {}
        for b in reversed(ours):
            overrides.update(b.__dict__.get("export_methods", {}))

        def lookup(attr: str) -> tuple[Any, type] | None:
            if attr in overrides:
                return overrides[attr], cls
            for b in ours:
                if attr in b.__dict__:
                    return b.__dict__[attr], b
            return None

        methods: dict[str, str] = {}
        class_attrs: dict[str, Any] = {}
        reads: set[str] = set()
        todo = ["forward"] if lookup("forward") is not None else []
        while todo:
            attr = todo.pop()
            if attr in methods:
                continue
            found = lookup(attr)
            assert found is not None
            value, owner_cls = found
            func = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
            if not inspect.isfunction(func):
                raise SourceError(
                    f"{_label(cls)}.{attr} is a {type(value).__name__}, not a method whose source dnas can copy"
                )
            source = _dedented_source(func)
            node = _function_node(source)
            if _uses_super(node):
                raise SourceError(f"{_label(func)} calls super(); the python format copies methods without their bases")
            if node.name != attr:  # an export_methods replacement takes the name of the method it replaces
                node.name = attr
                source = ast.unparse(node)
            self._resolve(node, func, _label(func))
            origin = "" if owner_cls is cls else f"# from {owner_cls.__module__}.{owner_cls.__qualname__}\n"
            methods[attr] = origin + source.strip()
            for used in _self_attributes(node):
                found = lookup(used)
                if found is None:
                    reads.add(used)  # an instance attribute, a submodule or a torch base attribute
                elif isinstance(found[0], (property, staticmethod, classmethod)) or inspect.isfunction(found[0]):
                    todo.append(used)
                elif is_plain(found[0]):
                    class_attrs[used] = found[0]
                else:
                    reads.add(used)
        self.code.class_attributes[cls] = reads
        body = [f"{k} = {v!r}" for k, v in class_attrs.items()]
        body += [m for _, m in sorted(methods.items())]
        base_name = f"nn.{base.__name__}" if getattr(nn, base.__name__, None) is base else None
        if base_name is None:
            raise SourceError(f"{_label(cls)} derives from {_label(base)}, which is not in torch.nn")
        doc = (inspect.getdoc(cls) or "").split("\n\n")[0]
        header = f'class {name}({base_name}):\n    """{_safe_doc(doc)}"""\n' if doc else f"class {name}({base_name}):\n"
        text = header + ("\n" + textwrap.indent("\n\n".join(body), "    ") if body else "    pass")
        self.code.imports.setdefault("nn", "from torch import nn")
        self.code.definitions[name] = f"# from {cls.__module__}.{cls.__qualname__} (forward path only)\n{text}"

    # -------------------------------------------------------------- structure
    def describe(self, module: nn.Module, path: str = "model") -> dict[str, Any]:
        """The module tree as plain data: class, attributes, parameter and buffer specs, children."""
        cls = type(module)
        class_name = self.class_name(cls)
        # torch's classes: every attribute (their forward is not ours to read); ours: those the copied code reads
        torch_class = is_torch_object(cls)
        needed = set() if torch_class else self.code.class_attributes[cls]
        attrs = {}
        for key, value in module.__dict__.items():
            if key in _MODULE_INTERNALS or not (torch_class or key in needed):
                continue
            if not is_plain(value):
                raise SourceError(
                    f"{path}.{key} is a {type(value).__name__} ({_label(cls)}); the python format stores module "
                    f"attributes as plain data (numbers, strings, tuples, lists, dicts)"
                )
            attrs[key] = value
        extra = set(getattr(module, "_non_persistent_buffers_set", ()))
        if extra:
            raise SourceError(f"{path} has non-persistent buffers {sorted(extra)}, which weights.pt would not carry")
        return {
            "class": class_name,
            "attrs": attrs,
            "parameters": {
                k: None if p is None else [list(p.shape), str(p.dtype).removeprefix("torch."), bool(p.requires_grad)]
                for k, p in module._parameters.items()
            },
            "buffers": {
                k: None if b is None else [list(b.shape), str(b.dtype).removeprefix("torch.")]
                for k, b in module._buffers.items()
            },
            "children": {k: self.describe(c, f"{path}.{k}") for k, c in module._modules.items() if c is not None},
        }

    def source(self) -> str:
        """Imports, constants and definitions, in an order in which every name exists before it is needed."""
        lines = ["from __future__ import annotations", "", "from pathlib import Path", ""]
        imports = sorted(set(self.code.imports.values()) | {"import torch", "from torch import nn"})
        lines += imports + [""]
        for name, value in self.code.constants.items():
            lines.append(f"{name} = {value!r}")
        parts = ["\n".join(lines)]
        parts += list(self.code.definitions.values())  # classes reference each other only at call time
        return "\n\n\n".join(p.strip() for p in parts)


def _safe_doc(text: str) -> str:
    """A docstring line that cannot close the string literal it is written into."""
    return text.replace("\\", "\\\\").replace('"""', "'''").strip()
