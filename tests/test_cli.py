"""The `gateway` command as a user runs it: a real process, a real port, real signals."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_starts_prints_its_address_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    (tmp_path / "gateway.toml").write_text(
        f"[server]\nport = {port}\n[providers.mock]\ndelay = 0\n"
    )
    process = _run(cwd=tmp_path, env=None)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        body = json.dumps({"model": "mock/x", "messages": [{"role": "user", "content": "hi"}]})
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            data=body.encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            answer = json.loads(response.read())
        assert answer["choices"][0]["message"]["content"].startswith("This is a mock reply")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()
    finally:
        process.kill()


def test_flags_override_the_file_and_sigint_stops_it(tmp_path: Path) -> None:
    port = _free_port()
    config = tmp_path / "custom.toml"
    config.write_text("[server]\nport = 1\n[providers.mock]\n")
    process = _run(
        "--config", str(config), "--host", "127.0.0.1", "--port", str(port), cwd=tmp_path
    )
    try:
        assert process.stdout is not None
        assert f"http://127.0.0.1:{port}" in process.stdout.readline()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
            assert json.loads(response.read())["status"] == "ok"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[server\nport = 1", "invalid TOML"),
        ('[providers.openai]\ntimeout = "soon"', "providers.openai.timeout"),
        ("[providers.local]\nbase_url = 'http://x'", "providers.local.type"),
        ("[providers.local]\ntype = 'openai'", "providers.local.base_url"),
        ("[providers.x]\ntype = 'mock'\ntokenz = 3", "tokenz"),
        ("[server]\nport = 'eighty'", "server.port"),
    ],
)
def test_bad_config_stops_with_one_line_naming_file_and_key(
    tmp_path: Path, toml: str, expected: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(toml)
    process = _run("--config", str(config), cwd=tmp_path)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert str(config) in lines[0] and expected in lines[0]


def test_missing_config_file_named_on_the_command_line_exits_2(tmp_path: Path) -> None:
    process = _run("--config", str(tmp_path / "absent.toml"), cwd=tmp_path)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 2
    assert "absent.toml: file not found" in stderr


def test_unset_env_key_is_a_warning_at_start_not_a_crash(tmp_path: Path) -> None:
    port = _free_port()
    (tmp_path / "gateway.toml").write_text(
        f'[server]\nport = {port}\n[providers.openai]\napi_key = "env.GATEWAY_CLI_UNSET_KEY"\n'
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "GATEWAY_CLI_UNSET_KEY"}
    process = _run(cwd=tmp_path, env=env)
    try:
        assert process.stdout is not None
        assert f":{port}" in process.stdout.readline()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stderr is not None
        assert "GATEWAY_CLI_UNSET_KEY is not set" in process.stderr.read()
    finally:
        process.kill()


def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    process = _run("--version", cwd=tmp_path)
    out, _ = process.communicate(timeout=30)
    assert out.startswith("gateway ") and out.strip() != "gateway unknown"


def _gateway(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    return done.returncode, done.stdout, done.stderr


def test_a_port_out_of_range_on_the_command_line_is_refused_as_in_the_file(
    tmp_path: Path,
) -> None:
    status, _, err = _gateway("--port", "99999", cwd=tmp_path)
    assert status == 2
    assert "--port: must be between 0 and 65535 (got '99999')" in err


def test_check_says_valid_or_prints_the_problem_and_exits_1(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[providers.mock]\ntype = "mock"\n[models.fast]\ntargets = ["mock/x"]\n')
    status, out, _ = _gateway("check", "--config", str(good), cwd=tmp_path)
    assert status == 0
    assert f"{good}: valid (1 providers, 1 aliases, 0 gateway keys)" in out
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 99999\n")
    status, out, err = _gateway("check", "--config", str(bad), cwd=tmp_path)
    assert status == 1 and not out
    assert err.strip() == f"gateway: error: {bad}: server.port: must be between 0 and 65535"


def test_config_prints_the_effective_config_with_secrets_redacted(tmp_path: Path) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(
        '[providers.openai]\ntype = "openai"\napi_key = "sk-literal-secret"\n'
        '[providers.other]\ntype = "openai"\nbase_url = "http://127.0.0.1:9/v1"\n'
        'api_key = "env.OTHER_KEY"\nheaders = { Authorization = "Bearer hdr-secret" }\n'
        '[keys.team]\nvalue = "gw-literal-secret"\n'
        '[state]\nredis_url = "redis://user:redis-secret@127.0.0.1:6379/0"\n'
    )
    status, out, err = _gateway("config", cwd=tmp_path)
    assert status == 0, err
    shown = json.loads(out)
    assert "secret" not in out.replace("redacted", "")
    assert shown["providers"]["openai"]["api_key"] == "<redacted>"
    assert shown["providers"]["other"]["api_key"] == "env.OTHER_KEY"  # a name, shown
    assert shown["providers"]["other"]["headers"]["Authorization"] == "<redacted>"
    assert shown["keys"]["team"]["value"] == "<redacted>"
    assert shown["state"]["redis_url"] == "redis://user:<redacted>@127.0.0.1:6379/0"
    assert shown["server"]["port"] == 8080 and shown["server"]["drain_timeout"] == 30.0
