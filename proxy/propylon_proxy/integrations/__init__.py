"""Integrations: the terminal step of a route's chain, one module each, chosen once per route.

``for_route`` is the one place that maps an integration type to its module; a new type is a new
module and one line here, never an edit to the dispatcher.
"""

from __future__ import annotations

from propylon_config import model
from propylon_proxy import steps
from propylon_proxy.integrations import answers, custom_function, function, http, http_proxy, mock, unbuilt

__all__ = ["answers", "custom_function", "for_route", "function", "http", "http_proxy", "mock", "unbuilt"]


def for_route(setup: steps.RouteSetup) -> steps.Integration:
    kind = setup.route.integration.type
    if kind is model.IntegrationType.MOCK:
        return mock.MockIntegration(setup)
    if kind is model.IntegrationType.HTTP_PROXY:
        return http_proxy.HttpProxyIntegration(setup)
    if kind is model.IntegrationType.HTTP:
        return http.HttpIntegration(setup)
    if setup.route.integration.proxy:
        return function.FunctionIntegration(setup)
    return custom_function.CustomFunctionIntegration(setup)
