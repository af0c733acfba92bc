"""The package's import structure: every module imports alone, no cycle, lazy imports only where they pay.

An import inside a function is allowed only where it keeps a heavy or
optional dependency (torch, safetensors, matplotlib, TensorFlow, ...) out of
a module that does not need it at import time: the imported module must
bring one that the importing module does not. Functions in
``microtransformer/autoencoder`` stay under 80 lines.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "microtransformer"
HEAVY = {
    "torch", "safetensors", "matplotlib", "tensorflow", "keras", "sentencepiece", "tokenizers", "tiktoken",
    "rustbpe", "pyarrow", "zstandard", "transformers", "pydoc_data",
}
MAX_FUNCTION_LINES = 80
# lazy imports kept for another reason than a heavy dependency, with the reason
ALLOWED_LAZY = {
    ("microtransformer.data.shards", "microtransformer.data.prepare"):
        "prepare_shards moved to data.prepare, which imports data.shards; the old import path resolves on use",
    ("microtransformer.tokenization.base", "microtransformer.tokenization.interop.imports"):
        "the base class imports other libraries' files with the importers, which build its engines (subclasses)",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The package module an imported dotted name belongs to (``a.b.C`` -> ``a.b``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> tuple[set[str], set[str], list[tuple[int, str, bool]]]:
    """``(package modules imported at module level, heavy modules imported at module level,
    [(line, target, is_package_module)] imported inside functions)``; ``TYPE_CHECKING`` blocks are left out."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    in_function: set[int] = set()
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(n) for n in ast.walk(node))
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(n) for n in ast.walk(node))
    top: set[str] = set()
    heavy: set[str] = set()
    lazy: list[tuple[int, str, bool]] = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                pkg = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
                base = ".".join(pkg[: len(pkg) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]
        for name in names:
            target = _resolve(name) if name.startswith("microtransformer") else name.split(".")[0]
            if target is None or target == module:
                continue
            is_package = target in MODULES
            if id(node) in in_function:
                lazy.append((node.lineno, target, is_package))
            elif is_package:
                top.add(target)
            elif target in HEAVY:
                heavy.add(target)
    return top, heavy, lazy


GRAPH = {m: _imports(m) for m in MODULES}


def _closure(module: str) -> set[str]:
    seen: set[str] = set()
    todo = [module]
    while todo:
        for t in GRAPH[todo.pop()][0]:
            if t not in seen:
                seen.add(t)
                todo.append(t)
    return seen


def _heavy(module: str) -> set[str]:
    return set(GRAPH[module][1]).union(*(GRAPH[m][1] for m in _closure(module)))


def test_no_module_level_import_cycle() -> None:
    cycles = sorted(m for m in MODULES if m in _closure(m))
    assert cycles == [], f"modules on an import cycle: {cycles}"


def test_imports_inside_functions_only_keep_heavy_dependencies_out() -> None:
    unjustified = []
    for module, (_, _, lazy) in GRAPH.items():
        for line, target, is_package in lazy:
            brings = (_heavy(target) - _heavy(module)) if is_package else ({target} & HEAVY) - _heavy(module)
            if not brings and (module, target) not in ALLOWED_LAZY:
                unjustified.append(f"{MODULES[module].relative_to(SRC)}:{line} imports {target}")
    assert unjustified == [], "import these at the top of the module:\n" + "\n".join(unjustified)


def test_every_module_imports_alone() -> None:
    """Each module imported first, in a fresh set of package modules (third-party ones stay loaded: fast).

    Left out: ``__main__`` (it runs the CLI) and the modules of the optional TensorFlow extra (their own tests import them).
    """
    names = sorted(m for m in MODULES if not m.endswith("__main__") and not _heavy(m) & {"tensorflow", "keras"})
    code = (
        "import importlib, sys, traceback\n"
        f"names = {names!r}\n"
        "failed = []\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m == 'microtransformer' or m.startswith('microtransformer.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failed.append(name + ': ' + traceback.format_exc().splitlines()[-1])\n"
        "print('\\n'.join(failed))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


@pytest.mark.parametrize(
    "module",
    ["microtransformer.cli.main", "microtransformer.tokenization.bpe", "microtransformer.autoencoder.tokenizer",
     "microtransformer.autoencoder.config", "microtransformer.autoencoder.results"],
)
def test_light_modules_do_not_import_torch(module: str) -> None:
    assert "torch" not in _heavy(module)
    code = f"import sys, {module}; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr


def test_autoencoder_functions_are_short() -> None:
    long = []
    for path in sorted((PACKAGE / "autoencoder").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.name}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []
