"""The shared VTL parse check accepts AWS-style templates and names where a broken one fails."""

from propylon_config.templates import template_error


def test_aws_style_template_parses() -> None:
    text = '#set($b = $input.path(\'$\'))\n{"id": "$b.id"#foreach($x in $b.tags),"$x"#end}'
    assert template_error(text) is None


def test_unclosed_if_reports_line_and_column() -> None:
    error = template_error('{\n#if($x) "a"\n}')
    assert error is not None
    assert error.startswith("line 3, column 2")
