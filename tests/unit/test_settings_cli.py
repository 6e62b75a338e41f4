"""Settings from the environment, and the CLI's one-line errors."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from streams.cli import build_parser, main
from streams.settings import ConfigError, Settings, settings_markdown

REPO = Path(__file__).resolve().parents[2]


def test_defaults_and_overrides() -> None:
    s = Settings.from_env({})
    assert s.partitions == 8 and s.forecast_horizons_s == (300.0, 900.0, 3600.0)
    s = Settings.from_env({"NOVACRON_FORECAST_HORIZONS_S": "3600, 300", "NOVACRON_PARTITIONS": "3",
                           "KAFKA_BOOTSTRAP_SERVERS": "a:1,b:2"})
    assert s.forecast_horizons_s == (300.0, 3600.0)
    assert (s.partitions, s.bootstrap_servers) == (3, "a:1,b:2")
    assert s.topic("vm.metrics") == "vm.metrics"
    assert Settings.from_env({}, topic_prefix="x.").topic("vm.alerts") == "x.vm.alerts"


@pytest.mark.parametrize(("env", "message"), [
    ({"NOVACRON_PARTITIONS": "many"}, "NOVACRON_PARTITIONS: expected an integer"),
    ({"NOVACRON_PARTITIONS": "0"}, "NOVACRON_PARTITIONS: must be at least 1"),
    ({"NOVACRON_ALERT_THRESHOLD": "nan"}, "NOVACRON_ALERT_THRESHOLD"),
    ({"NOVACRON_ALERT_THRESHOLD": "1.5"}, "NOVACRON_ALERT_THRESHOLD: expected a number below 1"),
    ({"NOVACRON_FORECAST_HORIZONS_S": ","}, "NOVACRON_FORECAST_HORIZONS_S: expected comma"),
    ({"NOVACRON_LOG_LEVEL": "loud"}, "NOVACRON_LOG_LEVEL"),
    ({"NOVACRON_CPU_QUANTILE": "1.5"}, "NOVACRON_CPU_QUANTILE: expected a number in"),
    ({"NOVACRON_SECURITY_PROTOCOL": "TLS"}, "NOVACRON_SECURITY_PROTOCOL: expected one of"),
    ({"NOVACRON_SECURITY_PROTOCOL": "SASL_SSL"}, "SASL_SSL needs NOVACRON_SASL_USERNAME"),
    ({"NOVACRON_SECURITY_PROTOCOL": "SASL_SSL", "NOVACRON_SASL_USERNAME": "u",
      "NOVACRON_SASL_PASSWORD": "p", "NOVACRON_SASL_MECHANISM": "GSSAPI"},
     "NOVACRON_SASL_MECHANISM: expected one of"),
    ({"NOVACRON_SSL_CAFILE": "/nonexistent/ca.pem"}, "NOVACRON_SSL_CAFILE: no such file"),
    ({"NOVACRON_LOG_FORMAT": "xml"}, "NOVACRON_LOG_FORMAT: expected json or text"),
])
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_settings_are_frozen() -> None:
    s = Settings.from_env({})
    with pytest.raises(AttributeError):
        s.partitions = 2  # type: ignore[misc]


def test_docs_settings_md_is_generated_from_the_code() -> None:
    assert (REPO / "docs" / "settings.md").read_text() == settings_markdown(), \
        "docs/settings.md is stale: run `make docs`"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=REPO, text=True,
                          capture_output=True, env={"PATH": "/usr/bin:/bin", **(env or {})},
                          timeout=60, check=False)


@pytest.mark.parametrize("args", [
    ("replay", "--speedup", "fast"),
    ("replay", "--vms", "-3"),
    ("nonsense",),
    ("topics",),
])
def test_bad_arguments_give_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("novacron"), proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_config_gives_one_line_and_exit_2() -> None:
    proc = run_cli("replay", env={"NOVACRON_PARTITIONS": "eight"})
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("novacron: config error: NOVACRON_PARTITIONS: expected an "
                                   "integer, got 'eight'")


@pytest.mark.parametrize("args", [
    ("tail", "alerts"),
    ("feedback", "vm-001/cpu_spike/1372636800", "--confirmed"),
    ("models", "list"),
    ("replay", "--vms", "1", "--limit", "5", "--no-progress"),
])
def test_an_unreachable_broker_is_one_line(args: tuple[str, ...]) -> None:
    proc = run_cli(*args, env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("novacron: Kafka at 127.0.0.1:1"), \
        proc.stderr


def test_commands_that_need_a_cluster_say_so() -> None:
    proc = run_cli("worker")
    assert proc.returncode == 2
    assert "KAFKA_BOOTSTRAP_SERVERS is not set" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_missing_trace_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    assert main(["replay", "--data", str(tmp_path / "nowhere"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("novacron: no Bitbrains files") and "\n" not in err


def test_help_has_examples() -> None:
    proc = run_cli("--help")
    assert proc.returncode == 0
    assert "examples:" in proc.stdout and "novacron run" in proc.stdout


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
              ) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append(((*path, name), sub))
                out += _commands(sub, (*path, name))
    return out


def test_every_command_has_help_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    commands = _commands(build_parser())
    assert {c[0] for c, _ in commands} >= {"run", "worker", "replay", "backtest", "tail",
                                           "feedback", "topics", "models", "broker", "settings"}
    for path, _ in commands:
        with pytest.raises(SystemExit) as done:
            main([*path, "--help"])
        assert done.value.code == 0
        text = capsys.readouterr().out
        examples = text.split("examples:", 1)[-1]
        assert "examples:" in text and f"novacron {' '.join(path)}" in examples, path


def test_kafka_client_options_follow_the_security_settings() -> None:
    assert Settings.from_env({}).kafka_client_options() == {"security_protocol": "PLAINTEXT"}
    sasl = Settings.from_env({"NOVACRON_SECURITY_PROTOCOL": "SASL_SSL",
                              "NOVACRON_SASL_MECHANISM": "SCRAM-SHA-512",
                              "NOVACRON_SASL_USERNAME": "svc", "NOVACRON_SASL_PASSWORD": "pw"})
    options = sasl.kafka_client_options()
    assert options["security_protocol"] == "SASL_SSL" and options["ssl_context"] is not None
    assert (options["sasl_mechanism"], options["sasl_plain_username"],
            options["sasl_plain_password"]) == ("SCRAM-SHA-512", "svc", "pw")
    assert "pw" in sasl.secrets()

    from streams.app import broker_credentials

    credentials = broker_credentials(sasl)
    assert type(credentials).__name__ == "SASLCredentials"
    assert broker_credentials(Settings.from_env({})) is None
