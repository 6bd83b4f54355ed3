r"""Velocity 1.7's language, as Amazon API Gateway runs templates, where airspeed reads it
otherwise: string literals, ``#foreach`` over values that are not lists, and the directives
and notations airspeed lacks. Every expected value is what Velocity 1.7 itself rendered
(org.apache.velocity:velocity:1.7) for the same template and body."""

from __future__ import annotations

import pytest

from propylon_config import templates
from propylon_proxy import vtl

BODY = b'{"user": {"name": "ann", "age": 3}, "s": "xyz", "num": 5, "a": [1, 2], "bs": "a\\\\b", "d": "a1b22"}'


def _render(text: str, body: bytes = BODY) -> str:
    namespace = {
        "input": vtl.Input(body, {"path": {}, "querystring": {}, "header": {}}),
        "util": vtl.UTIL,
        "context": {},
        "stageVariables": {},
    }
    return vtl.render(vtl.compile(text), namespace)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Velocity does no backslash escapes in literals (airspeed: 0|1|1).
        ("""#set($a = "\\\\")#set($b = '\\\\')#set($c = '\\n')$a.length()|$b.length()|$c.length()""", "2|2|2"),
        # AWS's idiom for escaping a value doubles each backslash (airspeed: \a\\\b\).
        ("""$input.path('$.bs').replaceAll("\\\\", "\\\\\\\\")""", "a\\\\b"),
        ("""#set($a = "a\\tb")$a.length()|#set($b = "a\\\\")[$b]""", "4|[a\\\\]"),
        # A backslash before anything else was a parse error in airspeed.
        ("""#set($a = "x\\d")$a|#set($b = '\\d+')$b|$input.path('$.d').replaceAll('\\d', '#')""", "x\\d|\\d+|a#b##"),
        # A doubled quote is one quote; "\\uXXXX" is that character in a double-quoted literal.
        ('''#set($a = 'it''s "q"')$a|#set($b = "it's ""q""")$b''', 'it\'s "q"|it\'s "q"'),
        ("""#set($a = "\\u0041\\\\u0042")$a|#set($b = 'x\\u0041')$b""", "A\\B|x\\u0041"),
        ("""#set($v = "q")#set($a = "[\\$v]")$a|#set($b = "[$v]")$b|#set($c = '[$v]')$c""", "[$v]|[q]|[$v]"),
    ],
)
def test_string_literals_keep_their_backslashes(text: str, expected: str) -> None:
    assert templates.template_error(text) is None
    assert _render(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#foreach($v in $input.path('$.user'))[$v]#end", "[ann][3]"),  # a map: its values
        (
            '#set($m = {"a": 1, "b": 2})#foreach($v in $m)[$v $foreach.count $foreach.hasNext]#end',
            "[1 1 true][2 2 false]",
        ),
        ("#foreach($c in $input.path('$.s'))[$c]#end|", "|"),  # a string: no pass
        ("#foreach($c in $input.path('$.num'))[$c]#end|#foreach($c in true)[$c]#end|", "||"),  # was a 500
        ("#foreach($c in $input.path('$.a'))[$c]#end|#foreach($c in $nope)[$c]#end", "[1][2]|"),
        ("#foreach($k in $input.path('$.user').keySet())[$k]#end", "[name][age]"),
        ("#foreach($e in $input.path('$.user').entrySet())[$e.key=$e.value]#end", "[name=ann][age=3]"),
    ],
)
def test_foreach_iterates_what_velocity_iterates(text: str, expected: str) -> None:
    assert _render(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # #break was printed as text and the loop went on ("1#break23").
        ("#foreach($x in [1, 2, 3])#if($x == 2)#break#end$x#end", "1"),
        ("#foreach($x in [1, 2])#foreach($y in [1, 2, 3])#if($y == 2)#{break}#end$x$y #end#end", "11 21 "),
        ("a#break b", "a"),  # outside any #foreach it ends the template
        ("#if(true)x#break y#end z", "x"),
    ],
)
def test_break_leaves_the_innermost_foreach(text: str, expected: str) -> None:
    assert _render(text) == expected


def test_directives_open_in_formal_notation() -> None:
    # Refused at compile time before ("expected block element ... got: #{end}").
    text = "#{foreach}($x in [1,2])$x#{end}|#{if}(false)y#{elseif}(true)e#{else}n#{end}|#{set}($a = 1)$a"
    assert templates.template_error(text) is None
    assert _render(text) == "12|e|1"
