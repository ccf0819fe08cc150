"""Validation answers exact matches (``3`` for ``int``, ``[1, 2]`` for ``list[int]``) without
Pydantic; it must never accept a value that Pydantic would reject."""
from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from annotated_types import Ge, Gt, Lt
from pydantic import Field, TypeAdapter

from stoker.config.validation import _surely_fits, check_type

TYPES = [int, float, bool, str, Path, Optional[int], Union[int, str], int | None, Literal["gpt", 1],
         Literal[True], Annotated[int, Field(gt=0)], Annotated[float, Field(ge=0.0, lt=1.0)],
         Annotated[int | None, Field(gt=0)], Annotated[int, Field(multiple_of=2)], list[int],
         list[str], tuple[float, float], tuple[int, ...], dict[str, int], dict[str, list[float]],
         Annotated[str, Field(min_length=2)], Annotated[int, Gt(0)], Annotated[float, Ge(0.0), Lt(1.0)],
         Annotated[int | None, Gt(0)], Annotated[float | None, Gt(0)]]

scalars = (st.integers(-5, 5) | st.floats(allow_nan=True, allow_infinity=True) | st.booleans()
           | st.sampled_from(["", "gpt", "3", "a/b", "true", "1.5"]) | st.none())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(["a", "b", "1"]), inner, max_size=3),
                      max_leaves=6)


def pydantic_accepts(value, tp) -> bool:
    try:
        TypeAdapter(tp).validate_python(value)
    except Exception:  # noqa: BLE001
        return False
    return True


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TYPES), values)
def test_fast_acceptance_implies_pydantic_acceptance(tp, value):
    if _surely_fits(value, tp):
        assert pydantic_accepts(value, tp), (tp, value)


@pytest.mark.parametrize("tp,value", [(Annotated[int, Gt(0)], 0), (Annotated[float, Lt(1.0)], 1), (list[int], [1, "x"]),
                                      (tuple[float, float], [1.0]), (Literal["gpt"], "rnn"),
                                      (Annotated[int, Field(multiple_of=2)], 3)])
def test_rejections_still_get_pydantics_message(tp, value):
    assert pydantic_accepts(value, tp) is False
    assert check_type(value, tp)  # a sentence saying why


def test_common_config_values_skip_pydantic():
    for tp, value in [(int, 3), (float, 3), (Path, "out"), (Annotated[int, Gt(0)], 4),
                      (typing.Optional[float], 0.5), (list[str], ["jsonl"]), (tuple[float, float], [0.9, 0.95])]:
        assert _surely_fits(value, tp)
