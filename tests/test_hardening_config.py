"""The [server] hardening keys: defaults, checks, and config mistakes named like the others."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import parse, warn_missing_keys
from gateway.server import fdlimit
from wire.config_values import ConfigError


def test_server_hardening_defaults() -> None:
    server = parse("", "g.toml").server
    assert server.max_upstream_bytes == 64 * 1024 * 1024
    assert server.header_timeout == 10
    assert server.body_timeout == 10 and server.min_body_rate == 240
    assert server.idle_timeout == 75  # above the 60 s of common load balancers
    assert server.max_connections is None  # sized from the open-file limit at start
    assert server.allowed_hosts is None
    assert server.held_bytes_limit == 512 * 1024 * 1024  # eight answers at max_upstream_bytes


def test_max_held_bytes_follows_a_larger_max_upstream_bytes_unless_set() -> None:
    raised = parse("[server]\nmax_upstream_bytes = 1073741824", "g.toml").server
    assert raised.held_bytes_limit == 1073741824  # one answer at the limit can still be held
    both = "[server]\nmax_upstream_bytes = 1000\nmax_held_bytes = 5000"
    assert parse(both, "g.toml").server.held_bytes_limit == 5000


@pytest.mark.parametrize(
    ("configured", "limit", "cap"),
    [
        (None, 1024, 448),  # (1,024 - 64 for the process - 64 for refusals) / 2 files each
        (None, 256, 64),
        (None, 48, 1),  # too few files for any: one, not none
        (None, 524_288, 4096),  # systemd's hard limit: the default, 4,096
        (None, None, 4096),  # no limit
        (10_000, 1024, 10_000),  # configured: kept (and warned about at start)
    ],
)
def test_the_default_connection_cap_leaves_each_client_a_file_for_its_upstream(
    configured: int | None, limit: int | None, cap: int
) -> None:
    assert fdlimit.connection_cap(configured, limit) == cap


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("serverr = 1", "g.toml: serverr: unknown key"),
        ("[serverr]\nport = 1", "g.toml: serverr: unknown key"),
        ("[server]\nprot = 1", "g.toml: server.prot: unknown key"),
        ("[providers.x]\ntype = 'mock'\ntokenz = 3", "g.toml: providers.x.tokenz: unknown key"),
        ("[server]\nmax_upstream_bytes = 0", "g.toml: server.max_upstream_bytes: must be"),
        ("[server]\nmax_connections = -1", "g.toml: server.max_connections: must be"),
        ("[server]\nmax_held_bytes = 1000", "g.toml: server.max_held_bytes: must be at least"),
        ("[server]\nheader_timeout = 0", "g.toml: server.header_timeout: must be"),
        ("[server]\nbody_timeout = -1", "g.toml: server.body_timeout: must be"),
        ("[server]\nmin_body_rate = 0", "g.toml: server.min_body_rate: must be"),
        ("[server]\nidle_timeout = 0", "g.toml: server.idle_timeout: must be"),
        ("[server]\nallowed_hosts = ['a.example:8080']", "g.toml: server.allowed_hosts: 'a."),
        ("[server]\nallowed_hosts = ['http://a']", "g.toml: server.allowed_hosts:"),
        ("[server]\nallowed_hosts = ['a.*.b']", "g.toml: server.allowed_hosts:"),
        ("[server]\nallowed_hosts = 'a'", "g.toml: server.allowed_hosts: Expected `array"),
    ],
)
def test_mistakes_name_the_file_and_the_key(toml: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(toml, "g.toml")
    assert str(caught.value).startswith(expected), str(caught.value)


def test_host_patterns_that_are_accepted() -> None:
    toml = "[server]\nallowed_hosts = ['gw.example', '*.example.org', '[::1]', '10.0.0.5', '*']"
    assert parse(toml, "g.toml").server.allowed_hosts == [
        "gw.example",
        "*.example.org",
        "[::1]",
        "10.0.0.5",
        "*",
    ]


def test_an_empty_config_warns_that_no_provider_is_configured() -> None:
    (warning,) = warn_missing_keys(parse("", "empty.toml"))
    assert warning.startswith("empty.toml: no provider is configured")


def test_the_cli_names_a_top_level_typo_and_warns_on_an_empty_file(tmp_path: Path) -> None:
    typo = tmp_path / "typo.toml"
    typo.write_text("[server]\nport = 0\n[provider.mock]\n")
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(typo)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"gateway: error: {typo}: provider: unknown key"

    empty = tmp_path / "empty.toml"
    empty.write_text("")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--config", str(empty), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and "listening on" in process.stdout.readline()
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    finally:
        process.kill()
    assert f"{empty}: no provider is configured" in stderr
