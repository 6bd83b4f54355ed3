"""propylon_proxy.vtl on its own: the bounds a template cannot pass (DESIGN.md §2.5)."""

from __future__ import annotations

import json

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


def _rendered(text: str, body: bytes) -> str:
    namespace = {"input": vtl.Input(body, {}), "util": vtl.UTIL, "context": {}, "stageVariables": {}}
    return vtl.render(vtl.compile(text), namespace)


def test_escape_javascript_is_commons_langs_so_the_aws_idiom_stays_json() -> None:
    # What Commons Lang's StringEscapeUtils.escapeJavaScript (run under Velocity 1.7) gave for
    # this string; a raw U+0001 used to stay raw, so the rendered body was not JSON.
    value = "a\"b'c\\d/e\nf\tg\x01h\x1fi\x7fj\u00e9k\u0100l\u2028m\U0001f600n\b\f\r\x0b"
    body = json.dumps({"s": value}).encode()
    out = _rendered("$util.escapeJavaScript($input.path('$.s'))", body)
    assert out == (
        "a\\\"b\\'c\\\\d\\/e\\nf\\tg\\u0001h\\u001Fi\x7fj\\u00E9k\\u0100l\\u2028m\\uD83D\\uDE00n\\b\\f\\r\\u000B"
    )
    rendered = _rendered(
        '{"v": "$util.escapeJavaScript($input.path(\'$.s\'))"}', json.dumps({"s": "x\x01y\u00e9"}).encode()
    )
    assert json.loads(rendered) == {"v": "x\x01y\u00e9"}


def test_url_encode_is_javas_url_encoder() -> None:
    # Java's URLEncoder keeps only A-Z a-z 0-9 . - * _ (Python's quoting kept "~" too).
    body = json.dumps({"s": "a b~c*d.e-f_g!h(i)j+k&l=m/n\u00e9\U0001f600"}).encode()
    out = _rendered("$util.urlEncode($input.path('$.s'))", body)
    assert out == "a+b%7Ec*d.e-f_g%21h%28i%29j%2Bk%26l%3Dm%2Fn%C3%A9%F0%9F%98%80"


@pytest.mark.parametrize("text", ["$util.urlDecode('a%zzb')", "$util.urlDecode('a%2')"])
def test_url_decode_refuses_a_broken_escape_as_javas_decoder_does(text: str) -> None:
    with pytest.raises(vtl.RenderError):
        _rendered(text, b"{}")
    assert _rendered("$util.urlDecode('a+b%26c%C3%A9')", b"{}") == "a b&c\u00e9"


def test_the_shape_of_a_jsonpath_result_follows_the_path_as_jayways_does() -> None:
    # Jayway JsonPath (AWS's $input.json): an indefinite path is a list, [] when nothing
    # matches; a definite one is its value, whatever its key holds (a "*" made it a list).
    body = b'{"a*b": "v", "a": [{"n": 1}, {"n": 2}], "empty": [], "x": [7]}'
    text = (
        "$input.json(\"$['a*b']\")|$input.path(\"$['a*b']\")|[$input.json('$.empty[*]')][$input.path('$.empty[*]')]"
        "|$input.json('$.a[0:1]')|$input.json('$.a[0:2]')|$input.json('$.x[*]')|$input.json('$..n')|$input.json('$.a[0]')"
    )
    assert _rendered(text, body) == '"v"|v|[[]][[]]|[{"n":1}]|[{"n":1},{"n":2}]|[7]|[1,2]|{"n":1}'
