"""The shared VTL parse check accepts AWS-style templates and names where a broken one fails."""

from propylon_config.templates import template_error


def test_aws_style_template_parses() -> None:
    text = '#set($b = $input.path(\'$\'))\n{"id": "$b.id"#foreach($x in $b.tags),"$x"#end}'
    assert template_error(text) is None


def test_unclosed_if_reports_line_and_column() -> None:
    error = template_error('{\n#if($x) "a"\n}')
    assert error is not None
    assert error.startswith("does not parse: line 3, column 2")


def test_a_directive_that_runs_other_text_is_refused_with_its_position() -> None:
    assert template_error("{\n  #evaluate($input.body)\n}") == (
        "uses #evaluate (it renders text as template code at run time), which is not supported (line 2, column 3)"
    )
    assert template_error("#include('x')") is not None
    assert template_error('#set($x = "#parse(\'x\')")') is not None  # inside a string literal too
