"""The config fast paths (:mod:`stoker.config.fastpaths`) agree with the libraries they copy.

Each fast path answers the common case without the library; these tests hold it to the
library's own answer, so a rule that drifts (or a library upgrade that changes one) fails
here: Hydra's override parser, OmegaConf's interpolation resolution, and Pydantic's
acceptance of a value for an annotation.
"""
from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import pytest
from annotated_types import Ge, Gt, Lt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field, TypeAdapter

from stoker.config.fastpaths import NO_FAST, fast_ref, plain_override, surely_fits
from stoker.config.overrides import _hydra_parse
from stoker.config.validation import check_type
from stoker.errors import ConfigError


# ---------------------------------------------------------------- Hydra's override parser
def _parsed(fn, text):
    """(kind, key, value, has_value) of an override, or the error message."""
    import math

    try:
        op = fn(text)
    except ConfigError as e:
        return ("error", str(e))
    if op is None:
        return None
    value = "nan" if isinstance(op.value, float) and math.isnan(op.value) else op.value
    return (op.kind, op.key, type(value).__name__, value, op.has_value)


_fast_chars = st.sampled_from(list("aAzZ_09185.eE+-~=xX ") + ["true", "False", "NULL", "inf", "NaN",
                                                               "1_0", "'", "${a}", "[1]", ",", "/", ":", "@",
                                                               "%", "*", "?", "|", "$", "\\", "(", "tmp/x.txt"])


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_fast_chars, max_size=10).map("".join) | st.text(max_size=10))
def test_fast_override_path_agrees_with_hydras_parser(text):
    # the plain forms skip Hydra's (slow to import) parser; they must mean exactly the same
    fast = _parsed(plain_override, text)
    if fast is not None:
        assert fast == _parsed(_hydra_parse, text), text


@pytest.mark.parametrize("text", ["a=1", "a.b=-1_000", "a=1.", "a=.5", "a=1e-3", "a=+1E5", "a=inf",
                                  "a=-NaN", "a=TRUE", "a=false", "a=Null", "a=nullx", "a=", "++a-b.c_d=x-y",
                                  "+a=truex", "~a.b", "~a=3", "~a=", "~a=null", "a=1_0.5_5", "a=0", "a=infinity",
                                  "a=/data/char", "out=runs/a-1.5", "a=host:29500", "a=1-2", "a=/", "a=:",
                                  "a=x@y", "a=1.5/2", "~a=/x", "a=+inf.x", "a=%*?|", "a=.5.5", "a=1e", "a=-"])
def test_fast_override_path_examples(text):
    assert _parsed(plain_override, text) == _parsed(_hydra_parse, text)


@pytest.mark.parametrize("text", ["a=/x y", "a=/x$y", "a=${x}/y", "a=/x\\,y", "a=a/b,c/d", "a=x=y",
                                  "a=[/x]", "a='/x'"])
def test_fast_override_path_leaves_the_rest_to_hydra(text):
    # spaces, escapes, interpolations, sweeps, containers and quotes: Hydra's parser decides
    assert plain_override(text) is None


# ---------------------------------------------------------------- OmegaConf's `${a.b}`
_TREE = {"a": {"b": 3, "s": "x", "l": [1, {"c": 2.5}], "n": None, "m": "???", "i": "${a.b}",
               "d": {"e": True}}, "top": "t", "k-1": {"v_2": "w"}, "nested": "${a.s}y"}
_REFS = ["${a.b}", "${a.s}", "${a.l}", "${a.l.0}", "${a.l.1.c}", "${a.l.5}", "${a.n}", "${a.m}",
         "${a.i}", "${a.d}", "${a.d.e}", "${top}", "${k-1.v_2}", "${nested}", "${nope}", "${a.nope}",
         "${a.b.c}", "${.a}", "${ a.b }", "${oc.env:HOME}", "x${a.b}", "${a.b}${a.s}", "plain", 3]


@pytest.mark.parametrize("raw", _REFS)
def test_fast_reference_agrees_with_omegaconf(raw):
    # `${a.b}` is looked up without OmegaConf's grammar parser; when it answers, OmegaConf
    # must give the same value (a node reference: the same node's contents)
    from omegaconf import DictConfig, ListConfig, OmegaConf

    root = OmegaConf.create({**_TREE, "probe": raw})
    fast = fast_ref(root, raw)
    if fast is NO_FAST:
        return
    expected = root.probe
    if isinstance(fast, (DictConfig, ListConfig)):
        assert OmegaConf.to_container(fast, resolve=True) == OmegaConf.to_container(expected, resolve=True)
    else:
        assert fast == expected and type(fast) is type(expected), raw


def test_fast_reference_answers_the_plain_forms():
    from omegaconf import OmegaConf

    root = OmegaConf.create(_TREE)
    assert [fast_ref(root, r) for r in ("${a.b}", "${a.l.1.c}", "${top}", "${k-1.v_2}")] == [3, 2.5, "t", "w"]
    assert all(fast_ref(root, r) is NO_FAST for r in ("${a.i}", "${a.m}", "${nope}", "${oc.env:HOME}"))


# ---------------------------------------------------------------- Pydantic's acceptance
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
    if surely_fits(value, tp):
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
        assert surely_fits(value, tp)
