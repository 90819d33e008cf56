"""The import contract: the layers of pyproject.toml's [tool.importlinter] hold.

wire < formats < providers < gateway; inside gateway, config < server < engine < policy |
observability < routes | console < app < __main__; each route module stands alone; formats/
are sans-IO; no import circle. import-linter checks them as its CLI does, and each contract is
shown to catch the import it forbids, so none of them can pass by being vacuous.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import grimp
import pytest
from importlinter.api import read_configuration
from importlinter.contracts.acyclic_siblings import AcyclicSiblingsContract
from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.contracts.independence import IndependenceContract
from importlinter.contracts.layers import LayersContract
from importlinter.domain.contract import Contract

ROOT = Path(__file__).parent.parent
PYPROJECT = ROOT / "pyproject.toml"
SOURCE = ("wire", "formats", "providers", "gateway")
CONTRACT_TYPES: dict[str, type[Contract]] = {
    kind.type_name: kind
    for kind in (LayersContract, IndependenceContract, ForbiddenContract, AcyclicSiblingsContract)
}

# One import each contract forbids (importer, imported): added to the real graph, it must
# break that contract. Each exists to be refused, none is in the code.
BAD_IMPORTS = {
    "packages": [("wire.sse", "gateway.app"), ("formats.chat.request", "providers.openai")],
    "gateway": [
        ("gateway.engine.dispatcher", "gateway.policy.limits"),  # engine -> a concrete policy
        ("gateway.policy.cooldowns", "gateway.observability.metrics"),
        ("gateway.observability.metrics", "gateway.policy.cooldowns"),
        ("gateway.server.guards", "gateway.engine.stream"),
        ("gateway.config", "gateway.server.guards"),
    ],
    "routes": [("gateway.routes.chat", "gateway.routes.messages")],
    "sans-io": [("formats.chat.request", "asyncio"), ("formats.gemini.framing", "aiohttp")],
    # Each reverses an import the code has: a circle.
    "no-circles": [
        ("gateway.engine.keepalive", "gateway.engine.stream"),
        ("providers.declaration", "providers.adapter"),
        ("wire.redact", "wire.errors"),
    ],
}


def _config() -> dict[str, Any]:
    return read_configuration(str(PYPROJECT))


def _contracts() -> dict[str, tuple[Contract, dict[str, Any]]]:
    config = _config()
    session = config["session_options"]
    found = {}
    for options in config["contracts_options"]:
        contract = CONTRACT_TYPES[options["type"]](
            name=options["name"], session_options=session, contract_options=options
        )
        found[options["id"]] = (contract, options)
    return found


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    session = _config()["session_options"]
    return grimp.build_graph(
        *session["root_packages"],
        include_external_packages=str(session.get("include_external_packages")) == "True",
        cache_dir=None,
    )


def test_the_import_contract_holds() -> None:
    # The CLI, as a developer runs it: its report is the failure message.
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache", "--config", PYPROJECT],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_contract_has_a_bad_import_to_catch() -> None:
    assert set(_contracts()) == set(BAD_IMPORTS)


@pytest.mark.parametrize(
    ("contract_id", "importer", "imported"),
    [(key, *bad) for key, imports in BAD_IMPORTS.items() for bad in imports],
)
def test_a_contract_catches_the_import_it_forbids(
    graph: grimp.ImportGraph, contract_id: str, importer: str, imported: str
) -> None:
    contract, _ = _contracts()[contract_id]
    assert contract.check(copy.deepcopy(graph), verbose=False).kept
    assert importer in graph.modules and imported in graph.modules
    assert not graph.direct_import_exists(importer=importer, imported=imported)
    if contract_id == "no-circles":
        assert graph.direct_import_exists(importer=imported, imported=importer)

    broken = copy.deepcopy(graph)
    broken.add_import(importer=importer, imported=imported)
    assert not contract.check(broken, verbose=False).kept


def test_no_two_modules_share_a_name() -> None:
    # Except the parts of the client formats, named alike on purpose: formats/<api>/request.py,
    # from_chat.py, to_chat.py, probe.py, error_shape.py, count_tokens.py, so that "where is
    # Gemini's error shape" has the answer "where is Anthropic's" has.
    places = defaultdict(list)
    for package in SOURCE:
        for path in (ROOT / package).rglob("*.py"):
            if path.name != "__init__.py":
                places[path.stem].append(path.relative_to(ROOT))
    format_parts = {name for name, paths in places.items() if all(_a_format_part(p) for p in paths)}
    clashes = {
        name: [str(path) for path in paths]
        for name, paths in places.items()
        if len(paths) > 1 and name not in format_parts
    }
    assert clashes == {}


def _a_format_part(path: Path) -> bool:
    return path.parts[0] == "formats" and len(path.parts) == 3
