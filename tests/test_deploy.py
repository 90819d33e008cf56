"""deploy/: every file checked as far as offline tools allow.

- Kubernetes manifests against Kubernetes' own schemas (kubernetes-validate, strict: an
  unknown field is an error), and against the gateway: the ConfigMap's gateway.toml loads,
  the grace period outlasts the drain, the probes' paths answer.
- The compose file against the Compose Specification's JSON schema (tests/fixtures/
  compose-spec/), with every file it mounts present; Prometheus' config through `promtool`.
- The Dockerfile's own commands run here: its CMD's arguments start the gateway, and its
  HEALTHCHECK command passes against it (the image itself is not built: no Docker engine).
- The systemd unit through `systemd-analyze verify`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import kubernetes_validate
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from gateway.config import parse
from tests.processes import GatewayProcess

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
# The oldest Kubernetes the manifests must work on (autoscaling/v2, policy/v1 are GA there).
KUBERNETES_VERSION = "1.30"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _manifests() -> dict[str, dict[str, Any]]:
    """Every object of deploy/kubernetes by kind (the kustomization's and the example)."""
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    objects: dict[str, dict[str, Any]] = {}
    for name in [*kustomization["resources"], "secret.example.yaml"]:
        for doc in _documents(KUBERNETES / name):
            objects[doc["kind"]] = doc
    return objects


@pytest.mark.parametrize(
    "name", sorted(p.name for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")
)
def test_each_manifest_is_valid_against_kubernetes_schemas(name: str) -> None:
    for doc in _documents(KUBERNETES / name):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in KUBERNETES.glob("*.yaml")}
    assert listed == present - {"kustomization.yaml", "secret.example.yaml"}


def test_the_deployment_fits_the_gateway_config_it_mounts() -> None:
    objects = _manifests()
    toml = objects["ConfigMap"]["data"]["gateway.toml"]
    config = parse(toml, "configmap.yaml")
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    pause = float(pre_stop[-1]) if pre_stop[0] == "sleep" else 0.0
    # The kubelet's SIGKILL comes after the grace period: the pause and the drain fit in it.
    assert pod["terminationGracePeriodSeconds"] > pause + config.server.drain_timeout
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    # Every env.VAR the config names is set from the Secret, whose keys the example shows.
    named = {value[4:] for value in _strings(tomllib.loads(toml)) if value.startswith("env.")}
    env = {item["name"]: item["valueFrom"]["secretKeyRef"] for item in container["env"]}
    assert named <= set(env)
    secret_keys = set(objects["Secret"]["stringData"])
    assert {ref["key"] for ref in env.values()} <= secret_keys
    assert all(ref["name"] == objects["Secret"]["metadata"]["name"] for ref in env.values())
    # The pod runs as the image's user.
    assert pod["securityContext"]["runAsUser"] == int(_last(_dockerfile(), "USER"))


def _strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return []


async def test_the_configmap_config_serves_the_probes(tmp_path: Path, redis_url: str) -> None:
    toml = _manifests()["ConfigMap"]["data"]["gateway.toml"]
    toml = toml.replace("redis://redis:6379/0", redis_url)
    env = {"GATEWAY_KEY": "k", "GATEWAY_ADMIN_KEY": "a", "OPENAI_API_KEY": ""}
    gateway = GatewayProcess(toml, tmp_path, "--host", "127.0.0.1", env=env)
    try:
        for path in ("/ready", "/health"):
            status = await _get_status(gateway.url + path)
            assert status == 200, path
    finally:
        gateway.stop()


async def _get_status(url: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status


def test_the_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads((ROOT / "tests/fixtures/compose-spec/compose-spec.json").read_text())
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(compose)  # the draft its $schema names
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), source
        build = service.get("build")
        if build is not None:
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()


def test_the_compose_gateway_config_loads_and_its_grace_outlasts_the_drain() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    gateway = compose["services"]["gateway"]
    config = parse((DEPLOY / "compose/gateway.toml").read_text(), "compose/gateway.toml")
    assert config.state.redis_url == "redis://redis:6379/0"
    assert float(gateway["stop_grace_period"].rstrip("s")) > config.server.drain_timeout
    prometheus = yaml.safe_load((DEPLOY / "compose/prometheus.yml").read_text())
    targets = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == ["gateway:8080"]


def test_prometheus_config_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool (Debian's prometheus package; .ci/run installs it)"
    result = subprocess.run(
        [promtool, "check", "config", str(DEPLOY / "compose/prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _dockerfile() -> DockerfileParser:
    return DockerfileParser(path=str(DEPLOY / "Dockerfile"))


def _last(parser: DockerfileParser, instruction: str) -> str:
    values = [item["value"] for item in parser.structure if item["instruction"] == instruction]
    assert values, f"the Dockerfile has no {instruction}"
    return str(values[-1])


def test_the_image_runs_as_a_user_of_its_own_and_copies_what_exists() -> None:
    parser = _dockerfile()
    user = _last(parser, "USER")
    assert user not in ("root", "0")
    for item in parser.structure:
        if item["instruction"] == "COPY" and "--from" not in item["value"]:
            *sources, _ = shlex.split(item["value"])
            for source in sources:
                assert (ROOT / source).exists(), source
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text()
    for name in ("pyproject.toml", "gateway/", "providers/", "wire/", "gateway.toml"):
        assert f"!{name}" in ignore


async def test_the_images_command_starts_the_gateway_and_its_healthcheck_passes(
    tmp_path: Path,
) -> None:
    parser = _dockerfile()
    entrypoint = json.loads(_last(parser, "ENTRYPOINT"))
    command = json.loads(_last(parser, "CMD"))
    assert entrypoint == ["gateway"]
    args = dict(zip(command[::2], command[1::2], strict=True))
    assert args["--workers"] == "auto" and args["--host"] == "0.0.0.0"
    # Here: the repository's gateway.toml (the image's), on loopback and a free port.
    args["--config"] = str(ROOT / "gateway.toml")
    args["--host"] = "127.0.0.1"
    toml = (ROOT / "gateway.toml").read_text()
    flat = [part for pair in args.items() if pair[0] != "--config" for part in pair]
    gateway = GatewayProcess(toml, tmp_path, *flat)
    try:
        port = gateway.url.rsplit(":", 1)[1]
        healthcheck = _last(parser, "HEALTHCHECK")
        check = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
        assert check[0] == "python"
        check = [sys.executable, *check[1:]]
        check[-1] = check[-1].replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        probe = await asyncio.create_subprocess_exec(*check, stderr=subprocess.PIPE)
        async with asyncio.timeout(30):
            _, stderr = await probe.communicate()
        assert probe.returncode == 0, stderr.decode()
    finally:
        gateway.stop()


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze (Debian's systemd; .ci/run installs it)"
    unit = (DEPLOY / "gateway.service").read_text()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    # Verified with the gateway installed where it is here, instead of /opt/gateway.
    installed = shutil.which("gateway", path=str(Path(sys.executable).parent))
    assert installed is not None
    (tmp_path / "gateway.service").write_text(unit.replace("/opt/gateway/bin/gateway", installed))
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / "gateway.service")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
