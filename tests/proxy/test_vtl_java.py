"""Templates print values and call methods as Java Velocity does (propylon_proxy.vtl_java).

Amazon API Gateway runs templates on Java, so AWS's documented templates expect Java's
``String.valueOf`` (``true``, ``{a=1}``, ``[1, x, null]``) and Java's methods on strings, lists
and maps. tests/serve/test_aws_examples.py checks AWS's own examples end to end; this checks
each rule on its own."""

from __future__ import annotations

import json
from typing import Any

import pytest

from propylon_proxy import vtl


def _render(text: str, document: Any) -> str:
    return vtl.render(vtl.compile(text), {"input": vtl.Input(json.dumps(document).encode(), {})})


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("$input.path('$.t') $input.path('$.f')", "true false"),
        ("#foreach($x in $input.path('$.l'))$x.b;#end", "true;false;"),  # inside a loop body too
        ("$input.path('$.m')", "{a=1, b=[true, null, x]}"),
        ("$input.path('$.m').toString()", "{a=1, b=[true, null, x]}"),
        ("#set($s = \"is $input.path('$.t')\")$s", "is true"),  # inside an interpolated string
        ("$input.path('$.m').keySet()", "[a, b]"),
        ("$!input.path('$.m').missing|$input.path('$.m').missing", "|$input.path('$.m').missing"),
    ],
)
def test_values_print_as_java_prints_them(template: str, expected: str) -> None:
    document = {"t": True, "f": False, "l": [{"b": True}, {"b": False}], "m": {"a": 1, "b": [True, None, "x"]}}
    assert _render(template, document) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("$input.path('$.m').size() $input.path('$.m').keySet().size()", "2 2"),
        ("$input.path('$.m').isEmpty() $input.path('$.e').isEmpty()", "false true"),
        ("$input.path('$.m').containsKey('a') $input.path('$.m').containsKey('z')", "true false"),
        ("$input.path('$.m').get('a')", "1"),
        ("#foreach($e in $input.path('$.m').entrySet())$e.key=$e.value;#end", "a=1;b=[2];"),
        ("$input.path('$.l').size() $input.path('$.l').get(1) $input.path('$.l').contains('y')", "3 y true"),
        ("$input.path('$.l').isEmpty() $input.path('$.l').indexOf('z') $input.path('$.l').indexOf('q')", "false 2 -1"),
        ("$input.path('$.s').length() $input.path('$.s').isEmpty() $input.path('$.s').equals('Hello')", "5 false true"),
        ("$input.path('$.s').toLowerCase()$input.path('$.s').toUpperCase()", "helloHELLO"),
        ("$input.path('$.s').substring(1, 3) $input.path('$.s').charAt(0) $input.path('$.s').indexOf('l')", "el H 2"),
        ("$input.path('$.s').endsWith('lo') $input.path('$.s').equalsIgnoreCase('HELLO')", "true true"),
        ("[$input.path('$.p').trim()] $input.path('$.s').matches('H.*o')", "[x] true"),
        ("$input.path('$.s').matches('H') $input.path('$.s').replaceAll('l+', 'L')", "false HeLo"),
        ("$input.path('$.n').equals(1) $input.path('$.n').equals('1')", "true false"),
        ("#set($l = [])#set($ok = $l.add('a'))#set($ok = $l.addAll(['b', 'c']))$ok $l.size() $l", "true 3 [a, b, c]"),
        ("#set($m = {})#set($old = $m.put('k', 1))[$!old] $m.put('k', 2) $m", "[] 1 {k=2}"),
        ("#set($m = {'a': 1, 'b': 2})#set($gone = $m.remove('a'))$gone $m $m.putAll({'c': 3})$m", "1 {b=2} {b=2, c=3}"),
    ],
)
def test_java_methods_on_json_values(template: str, expected: str) -> None:
    document = {"m": {"a": 1, "b": [2]}, "e": {}, "l": ["x", "y", "z"], "s": "Hello", "p": "  x \n", "n": 1}
    assert _render(template, document) == expected
