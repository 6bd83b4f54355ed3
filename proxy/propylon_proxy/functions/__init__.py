"""Functions: AWS Lambda handlers behind the gateway (DESIGN.md section 2.2).

``events`` builds the Amazon API Gateway proxy events (payload 1.0 and 2.0) from the request
context, ``client`` invokes a function over the Lambda Runtime Interface Emulator protocol, and
``responses`` maps what the handler returned back onto an HTTP response. The FUNCTION
integration (``integrations.function``) joins the three; authorizer functions reuse the client.
"""
