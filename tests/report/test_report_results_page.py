"""graphpress/testing/results.py: the pieces every benchmark's results page is written with."""

from graphpress.testing.results import markdown_cell, publish_lines, sweep_arguments


def test_a_results_page_is_written_and_printed(tmp_path, capsys):
    page = tmp_path / "deep" / "page.md"
    publish_lines(str(page), ["# title", f"| {markdown_cell('a|b')} |"])
    assert page.read_text() == "# title\n| a\\|b |\n"
    assert "# title" in capsys.readouterr().out


def test_sweeps_share_only_and_output():
    parser = sweep_arguments("One line of purpose.\n\nMore text.", "default.md", "names to run")
    assert parser.description == "One line of purpose."
    args = parser.parse_args(["--only", "opt,bloom"])
    assert args.only == "opt,bloom" and args.output == "default.md"
