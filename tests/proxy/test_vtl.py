"""propylon_proxy.vtl on its own: the bounds a template cannot pass (DESIGN.md §2.5)."""

from __future__ import annotations

import pytest

from propylon_proxy import vtl


def test_output_past_the_limit_is_a_render_error() -> None:
    template = vtl.compile("#foreach($i in [1..100])0123456789#end")
    assert len(vtl.render(template, {}, limit=1000)) == 1000
    with pytest.raises(vtl.RenderError):
        vtl.render(template, {}, limit=999)


def test_the_default_limit_is_ten_mib() -> None:
    template = vtl.compile("$input.body$input.body")
    half = vtl.Input(b"x" * (5 * 1024 * 1024), {})
    assert len(vtl.render(template, {"input": half})) == vtl.MAX_OUTPUT
    with pytest.raises(vtl.RenderError):
        vtl.render(template, {"input": vtl.Input(b"x" * (5 * 1024 * 1024 + 1), {})})


def test_escape_javascript_escapes_quotes_backslashes_and_controls() -> None:
    assert vtl.UTIL.escapeJavaScript("a\"b'c\\d\ne\tf") == "a\\\"b\\'c\\\\d\\ne\\tf"


def test_an_empty_body_reads_as_an_empty_object_and_a_missing_path_as_empty() -> None:
    template = vtl.compile("[$input.path('$.a')][$input.json('$.a')]")
    assert vtl.render(template, {"input": vtl.Input(b"", {})}) == "[][null]"


def test_a_bad_jsonpath_is_a_render_error() -> None:
    with pytest.raises(vtl.RenderError):
        vtl.render(vtl.compile("$input.json('$[')"), {"input": vtl.Input(b"{}", {})})


def test_a_compiled_template_renders_many_times_independently() -> None:
    template = vtl.compile("#foreach($i in $input.path('$'))$i#end")
    assert vtl.render(template, {"input": vtl.Input(b"[1,2]", {})}) == "12"
    assert vtl.render(template, {"input": vtl.Input(b"[3]", {})}) == "3"
