"""ir/dims.py: sizing a run-time dim from a reshape's element count."""

from graphpress.ir.dims import solve_reshape_dims


def test_one_unknown_dim_is_the_ratio_of_the_static_ones():
    assert solve_reshape_dims(("b", "s", 4, 8), ("b", "s", "unk__0")) == (("b", "s", 4, 8), ("b", "s", 32))
    assert solve_reshape_dims(("n", 64), ("n", "c", 8)) == (("n", 64), ("n", 8, 8))
    assert solve_reshape_dims(("d", 6), (2, 3, 4)) == ((4, 6), (2, 3, 4))  # the input side too


def test_what_the_element_count_does_not_fix_is_left_alone():
    unrelated = (("b", 12, 64), ("n", 64))  # two symbols, one equation
    assert solve_reshape_dims(*unrelated) == unrelated
    assert solve_reshape_dims(("b", 5), ("b", "x", 2)) == (("b", 5), ("b", "x", 2))  # 5 / 2 is no size
    assert solve_reshape_dims(("b", 8), ("x", "x")) == (("b", 8), ("x", "x"))
