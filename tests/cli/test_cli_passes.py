from pathlib import Path

from graphpress.cli import main
from graphpress.cli.passes_cmd import readme_with_pass_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_pass_table_matches_the_registry():
    text = README.read_text()
    assert readme_with_pass_table(text) == text, "run `graphpress passes --update-readme README.md`"


def test_passes_lists_every_registered_pass(capsys):
    import graphpress

    assert main(["passes"]) == 0
    out = capsys.readouterr().out
    for name in graphpress.list_passes():
        assert name in out


def test_bad_pipeline_exits_2_with_a_clear_message(tmp_path, capsys):
    out = tmp_path / "out.onnx"
    assert main(["optimize", "minilm", "-p", "dce,,", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "bad pipeline string" in err and "Traceback" not in err
    assert not out.exists()


def test_missing_model_exits_2(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope.onnx")]) == 2
    assert "no such model" in capsys.readouterr().err


def test_merge_subcommand_has_its_own_help(capsys):
    import pytest

    with pytest.raises(SystemExit) as info:
        main(["merge", "--help"])
    assert info.value.code == 0
    assert "--method" in capsys.readouterr().out


def test_atomic_outputs_get_normal_permissions(tmp_path):
    import os

    from graphpress.io import atomic_path

    with atomic_path(tmp_path / "folder", directory=True) as tmp:
        open(os.path.join(tmp, "x"), "w").close()
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o777 & ~umask
