"""Template operators mean what they mean in Velocity 1.7, the engine Amazon API Gateway runs
(propylon_proxy.vtl_math). Every expected value below is what Velocity 1.7 itself rendered for
the same template and body (org.apache.velocity:velocity:1.7, run with the body's JSON values).
"""

from __future__ import annotations

import pytest

from propylon_proxy import vtl, vtl_math


def _render(text: str, body: bytes = b"{}") -> str:
    namespace = {
        "input": vtl.Input(body, {"path": {}, "querystring": {}, "header": {}}),
        "util": vtl.UTIL,
        "context": {},
        "stageVariables": {},
    }
    return vtl.render(vtl.compile(text), namespace)


@pytest.mark.parametrize(
    ("text", "body", "expected"),
    [
        # AWS's idiom: #set($key = "user-" + $input.path('$.id')) (was a TypeError: 500)
        ("#set($s = $input.path('$.s') + '-' + $input.path('$.num'))$s", b'{"s": "x", "num": 5}', "x-5"),
        ("#set($s = 'n' + $input.path('$.num'))$s|#set($t = $input.path('$.num') + 'n')$t", b'{"num": 5}', "n5|5n"),
        ("#set($u = 'b' + true)$u|#set($v = \"id-\" + 5.5)$v", b"{}", "btrue|id-5.5"),
        ("#set($x = 'a' + $nope)$x|#set($y = $nope + 'a')$y", b"{}", "a$nope|$nopea"),  # null: its text
        ('#set($x = ("a" + 1) + (2 + 3))$x|#set($y = "a" + 1 + 2)$y|#set($z = 1 + 2 + "a")$z', b"{}", "a15|a12|3a"),
        (
            '#set($m = {"a": 1})#set($x = "m=" + $m)$x|#set($l = [1, "x"])#set($y = "l=" + $l)$y',
            b"{}",
            "m={a=1}|l=[1, x]",
        ),
        ("#set($x = [1] + [2])[$x]#set($y = true + 1)[$y]", b"{}", "[$x][$y]"),  # neither: null
    ],
)
def test_plus_joins_when_either_side_is_a_string(text: str, body: bytes, expected: str) -> None:
    assert _render(text, body) == expected


@pytest.mark.parametrize(
    ("text", "body", "expected"),
    [
        # Python's floor division and modulo gave 0.0, -4 and 1.
        ("#set($x = $input.path('$.f') / 2)$x", b'{"f": 1.5}', "0.75"),
        ("#set($y = $input.path('$.n') / 2)$y|#set($z = $input.path('$.n') % 2)$z", b'{"n": -7}', "-3|-1"),
        (
            "#set($a = 7 % -2)$a|#set($b = -7.5 % 2)$b|#set($c = 1 / 3.0)$c|#set($d = 10 / 4)$d",
            b"{}",
            "1|-1.5|0.3333333333333333|2",
        ),
        (
            "#set($e = 2 * 3 + 4 * 5)$e|#set($f = 10 - 2 - 3)$f|#set($g = 2 * 3 - 1 / 2)$g|#set($h = 100 / 7 % 3)$h",
            b"{}",
            "26|5|6|2",
        ),
        # A zero divisor is null (the #set leaves the reference unset), not a failed request.
        ("#set($x = 7 / 0)[$x]#set($y = 7 % 0)[$y]#set($z = 1.5 / 0)[$z]", b"{}", "[$x][$y][$z]"),
        ("#set($big = 12345678901234567890123 / -10)$big", b"{}", "-1234567890123456789012"),
    ],
)
def test_division_and_remainder_are_javas(text: str, body: bytes, expected: str) -> None:
    assert _render(text, body) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('#if("a" > 3)gt#else!gt#end', "!gt"),  # was a TypeError: 500
        ("#if($nope < 3)lt#else!lt#end|#if(true > 0)b#else!b#end|#if(3 >= 2.5)y#end", "!lt|!b|y"),
        ("#if(($input.path('$.n') + 1) > 5)big#else small#end", "big"),
    ],
)
def test_ordering_compares_numbers_only(text: str, expected: str) -> None:
    assert _render(text, b'{"n": 5}') == expected


def test_a_doubling_string_fails_the_render_before_it_grows_past_the_bound() -> None:
    text = '#set($s = "0123456789")#foreach($i in [1..30])#set($s = $s + $s)#end$s.length()'
    with pytest.raises(vtl.RenderError):
        _render(text)


def test_an_integer_growing_past_the_bound_fails_the_render_before_it_is_made() -> None:
    # Velocity widens to BigInteger; unbounded, each squaring doubles the work on the event loop.
    text = "#set($n = 3)" + "#set($n = $n * $n)" * 22 + "squared"  # 3^(2^22): 6.6 million bits
    with pytest.raises(vtl.RenderError, match="an integer past"):
        _render(text)
    # + and - grow a bit per step (the #foreach budget bounds that), and are held to it too.
    widest = 1 << vtl_math.MAX_BITS
    with pytest.raises(vtl_math.TooLong):
        vtl_math.add(widest, widest, "$a", "$b")


def test_large_integers_within_the_bound_still_compute() -> None:
    text = "#set($n = 3)" + "#set($n = $n * $n)" * 10 + "#set($m = $n - $n + 12345678901234567890 * 10)$m"
    assert _render(text) == "123456789012345678900"
