import pytest
from hypothesis import given
from hypothesis import strategies as st

from graphpress.errors import OptionError, PipelineError
from graphpress.passes import Option, format_pipeline, parse_pipeline, resolve_passes


@pytest.mark.parametrize(
    "text",
    ["dce", "dce,fold-bn", "fold-constants{max_elements=100},dce", "fold-bn,dce,fold-constants{max_elements=7}"],
)
def test_pipelines_print_back_identically(text):
    assert format_pipeline(resolve_passes(text)) == text


def test_parse_keeps_option_text_and_order():
    assert parse_pipeline('a{x=1,y="two words",z=p|q}') == [("a", {"x": "1", "y": "two words", "z": "p|q"})]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "empty pipeline"),
        ("dce,,fold-bn", "column 5"),
        ("dce{", "option name"),
        ("fold-constants{max_elements=1,max_elements=2}", "given twice"),
        ('dce{x="unterminated}', "unterminated"),
        ("Fold-BN", "pass name"),
        ("dce; rm -rf /", "expected ','"),
    ],
)
def test_malformed_pipelines_are_refused_with_a_caret(text, fragment):
    with pytest.raises(PipelineError, match=fragment):
        resolve_passes(text)


def test_unknown_pass_suggests_a_close_name():
    with pytest.raises(PipelineError, match="Did you mean fold-bn"):
        resolve_passes("fold-bm")


def test_options_are_typed_and_range_checked_before_anything_runs():
    with pytest.raises(OptionError, match="out of range"):
        resolve_passes("fold-constants{max_elements=0}")
    with pytest.raises(OptionError, match="must be int"):
        resolve_passes("fold-constants{max_elements=lots}")
    with pytest.raises(OptionError, match="has no option 'ratio'"):
        resolve_passes("dce{ratio=0.5}")


@given(st.floats(min_value=0, max_value=1, allow_nan=False))
def test_float_option_round_trip(value):
    opt = Option("ratio", "float", 0.0, low=0.0, high=1.0, high_inclusive=False)
    if value == 1.0:
        with pytest.raises(OptionError):
            opt.coerce(value, "p")
    else:
        assert opt.coerce(repr(value), "p") == value


def test_bool_and_list_options():
    assert Option("b", "bool").coerce("false", "p") is False
    assert Option("l", "list").coerce("lm_head|*.embed", "p") == ["lm_head", "*.embed"]
    with pytest.raises(OptionError):
        Option("b", "bool").coerce("maybe", "p")
