from typer.testing import CliRunner

from sync_platform.cli import app


def test_help_lists_the_sandbox_command():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0 and "sandbox" in result.output


def test_sandbox_rejects_nonsense_options():
    result = CliRunner().invoke(app, ["sandbox", "--contacts", "0"])
    assert result.exit_code != 0 and "contacts" in result.output
