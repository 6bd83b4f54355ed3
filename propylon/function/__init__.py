"""``python -m propylon.function MODULE.HANDLER``: run an AWS Lambda handler as a function Service.

It speaks the Lambda Runtime Interface Emulator protocol (``runtime``), so the gateway invokes
it exactly as it invokes an AWS Lambda container image; the handler gets a Lambda-like
``context`` (``lambda_context``) and the Lambda environment variables.
"""
