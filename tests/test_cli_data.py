"""`enastool data download` on a locally built archive in the real CIFAR-10 format."""

from click.testing import CliRunner

from enastool.data import cifar10, load_dataset
from enastool_cli.main import app

from test_data import make_archive


def test_download_command_verifies_unpacks_and_prints_the_folder(tmp_path):
    archive, md5 = make_archive(tmp_path)
    data_dir = tmp_path / "data"
    result = CliRunner().invoke(
        app, ["data", "download", "cifar10", "--data-dir", str(data_dir), "--url", archive.as_uri(), "--md5", md5]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(data_dir / cifar10.FOLDER)
    assert load_dataset("cifar10", data_dir).sizes()["train"] == 90


def test_download_command_with_a_bad_checksum_is_one_line_and_exit_2(tmp_path):
    archive, _ = make_archive(tmp_path)
    result = CliRunner().invoke(
        app, ["data", "download", "cifar10", "--data-dir", str(tmp_path / "d"), "--url", str(archive), "--md5", "0" * 32]
    )
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("enastool: error:") and "does not match" in lines[0]
    assert "Traceback" not in result.output
