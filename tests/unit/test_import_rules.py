"""The layering rules of the house, checked on the source: providers are plug-ins that know nothing
of orders, payments or payouts, the service never imports the simulator, and no provider is named outside
its own package and the registry's list (the CLI and demo wire the simulator in)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"
PROVIDER_NAMES_ALLOWED_IN = {"providers/registry.py", "cli.py", "demo.py"}


def _modules(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if ".venv" not in p.parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _is_under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize("path", _modules(APP / "providers"), ids=lambda p: str(p.relative_to(APP)))
def test_providers_import_nothing_from_orders_payments_or_payouts(path: Path) -> None:
    domains = ("app.orders", "app.payments", "app.payouts")
    bad = {n for n in _imports(path) if any(_is_under(n, domain) for domain in domains)}
    assert not bad, f"{path.relative_to(APP)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", _modules(APP), ids=lambda p: str(p.relative_to(APP)))
def test_the_service_never_imports_the_simulator(path: Path) -> None:
    relative = str(path.relative_to(APP))
    names = {n for n in _imports(path) if _is_under(n, "simulator")}
    if relative in {"cli.py", "demo.py"}:
        # The CLI's `demo` and `simulator` commands start it, inside functions only.
        top_level = {
            n
            for node in ast.parse(path.read_text()).body
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for n in ([a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""])
        }
        names &= top_level
    assert not names, f"{relative} imports {sorted(names)}"


def test_no_provider_is_named_outside_its_package_and_the_registry() -> None:
    from app.providers.registry import PLUGINS

    offenders = []
    for path in _modules(APP):
        relative = str(path.relative_to(APP))
        if relative in PROVIDER_NAMES_ALLOWED_IN:
            continue
        text = path.read_text().lower()
        for plugin in PLUGINS:
            if relative.startswith(f"providers/{plugin.name}/"):
                continue
            if plugin.name in text:
                offenders.append(f"{relative} names {plugin.name}")
    assert not offenders, offenders


def test_the_rules_see_real_imports() -> None:
    """Guard against a rule that cannot fail: the parser finds the imports it should."""
    assert "app.providers.base" in _imports(APP / "payments" / "service.py")
    assert any(_is_under(n, "simulator") for n in _imports(APP / "demo.py"))
