"""Mapping templates reach JSON values and AWS's variables, never the proxy's Python objects.

Before the sandbox, ``$input.__init__.__globals__`` led from a template to ``os`` (the first
case below printed the gateway's working directory). Each escape must now print as written,
as Velocity prints a reference it cannot resolve, and what templates legitimately do must
still work.
"""

from __future__ import annotations

import os

import pytest

from propylon_proxy import vtl

BODY = b'{"_id": "i-1", "name": "Tea", "tags": ["a", "b"], "n": 3}'

ESCAPES = [
    "$input.__init__.__globals__.get('urllib').parse.sys.modules.get('os').getcwd()",
    "$input.__init__.__globals__",
    "$input._raw",
    "$input._json()",
    "$util.__class__.__mro__",
    "$util._JS",
    "$util.escapeJavaScript.__self__",
    "$input.body.__class__.__base__.__subclasses__()",
    "$input.path('$').__class__",
    "$input.path('$.tags').__class__",
    "$context.__class__",
    "$input.params().__class__",
]


def _render(text: str) -> str:
    namespace = {
        "input": vtl.Input(BODY, {"path": {"id": "7"}, "querystring": {}, "header": {}}),
        "util": vtl.UTIL,
        "context": {"requestId": "req-1"},
        "stageVariables": {},
    }
    return vtl.render(vtl.compile(text), namespace)


@pytest.mark.parametrize("text", ESCAPES)
def test_python_internals_are_unresolvable_references(text: str) -> None:
    assert _render(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # airspeed keeps a parenthesised expression and a condition only as a bound method: the
        # walk that sandboxes a template missed them, so these reached Python.
        ("#if($util.__class__)leak#end", ""),
        ("#if($input.__init__.__globals__)leak#end", ""),
        ("#set($x = ($util.__class__.__name__))$x", "$x"),
        ('#set($x = ("ab" * 1000000000))$x', "$x"),
        ('#if(("a" * 3) == "aaa")leak#end', ""),
        ("#if($input.path('$.n') > 5)#elseif($util.__class__)leak#end", ""),
    ],
)
def test_conditions_and_parentheses_are_sandboxed_too(text: str, expected: str) -> None:
    assert _render(text) == expected


def test_a_format_string_cannot_read_attributes_of_its_arguments() -> None:
    text = '#set($f = "{0.__init__.__globals__}")$f.format($input)|$f.format_map($context)'
    assert _render(text) == "$f.format($input)|$f.format_map($context)"


def test_nothing_of_the_process_leaks_through_a_foreach_or_a_macro() -> None:
    text = (
        "#macro(peek $x)$x.__class__#end"
        "#foreach($t in $input.path('$.tags'))$foreach.__class__ #peek($t) #end"
        "$velocityCount.__class__"
    )
    out = _render(text)
    assert "class" not in out.replace("__class__", "")  # no "<class 'dict'>" or the like
    assert os.getcwd() not in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#set($o = $input.path('$'))$o._id", "i-1"),  # a key with an underscore is a key, not an attribute
        ("#set($o = $input.path('$'))$o.name.replace('T', 'P') $o.name.lower()", "Pea tea"),
        ("#set($o = $input.path('$'))$o.keySet() $o.keys().__len__()", "[_id, name, tags, n] $o.keys().__len__()"),
        ("$input.path('$.tags').size() $input.path('$.tags').get(1) $input.json('$.tags')", '2 b ["a","b"]'),
        ("$input.params('id') $util.escapeJavaScript('a\"b') $util.base64Encode('hi')", '7 a\\"b aGk='),
        ("#macro(hi $who)Hi $who#end#hi($input.path('$.name'))", "Hi Tea"),
        ("$input.path('$').get('n').toString() $context.requestId", "3 req-1"),
        ("#set($o = $input.path('$'))#set($o.extra = 'x')$o.extra", "x"),
    ],
)
def test_what_templates_do_still_works(text: str, expected: str) -> None:
    assert _render(text) == expected


def test_a_refused_directive_that_reaches_the_proxy_fails_the_render() -> None:
    # The compiler refuses these (propylon_config.templates); the proxy does not run one either.
    template = vtl.compile("before #evaluate('$input.body') after")
    with pytest.raises(vtl.RenderError):
        vtl.render(template, {"input": vtl.Input(b"{}", {}), "util": vtl.UTIL, "context": {}, "stageVariables": {}})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('#set($x = "ab" * 1000000000)$x', "$x"),  # Velocity: arithmetic on a string is null
        ('#set($x = "%0999999999d" % 1)$x', "$x"),
        ('#set($x = "abc" - "c")$x', "$x"),
        ("#set($x = 7 * 6)$x #set($y = 7 % 4)$y #set($w = 9 / 2)$w", "42 3 4"),
        ("#set($z = $input.path('$.n') - 1.5)$z", "1.5"),
        ('#set($x = "a" + "b")$x', "ab"),  # + still joins strings, as in Velocity
    ],
)
def test_arithmetic_takes_two_numbers(text: str, expected: str) -> None:
    assert _render(text) == expected
