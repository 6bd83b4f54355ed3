"""The ``context`` object a Lambda handler gets, with the attributes AWS's Python runtime gives.

Handlers and libraries read ``aws_request_id`` (Powertools' logger), ``function_name`` and
``get_remaining_time_in_millis()`` (to stop work before the timeout); the values come from the
same environment variables the Lambda runtime sets, so one configuration serves both.

``identity`` is never None: AWS's runtime (awslambdaric) always gives a ``CognitoIdentity``,
its two fields None unless the caller came through Cognito, so handlers read
``context.identity.cognito_identity_id`` without a check. ``client_context`` is None, as it is
for every invocation that carries no client context (API Gateway's never do), and so is
``tenant_id`` (set only for tenant-isolated functions).
"""

from __future__ import annotations

import os
import time


class CognitoIdentity:
    """``context.identity`` as awslambdaric makes it: the Cognito identity of the caller, if any.

    A gateway's invocation never has one, so both fields are None; slots, as awslambdaric's, so
    a typo in a handler is an AttributeError here as it is on Lambda.
    """

    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self) -> None:
        self.cognito_identity_id: str | None = None
        self.cognito_identity_pool_id: str | None = None

    def __repr__(self) -> str:
        return (
            f"CognitoIdentity(cognito_identity_id={self.cognito_identity_id!r}, "
            f"cognito_identity_pool_id={self.cognito_identity_pool_id!r})"
        )


class LambdaContext:
    """One invocation's context; ``deadline`` is a ``time.monotonic()`` value."""

    def __init__(self, request_id: str, deadline: float) -> None:
        env = os.environ
        self.aws_request_id = request_id
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME", "function")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        region = env.get("AWS_REGION", "propylon")
        self.invoked_function_arn = f"arn:aws:lambda:{region}:000000000000:function:{self.function_name}"
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME", f"/aws/lambda/{self.function_name}")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME", "propylon")
        self.identity = CognitoIdentity()
        self.client_context: object | None = None
        self.tenant_id: str | None = None
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.monotonic()) * 1000), 0)

    def __repr__(self) -> str:
        return f"LambdaContext(aws_request_id={self.aws_request_id!r}, function_name={self.function_name!r})"
