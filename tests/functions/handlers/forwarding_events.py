"""An authorizer that hands the headers of its own event back in its context, so a test can see
what a REQUEST authorizer was sent (context values are strings, as on AWS)."""

import json


def authorizer(event, context):
    return {
        "principalId": "fwd",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow",
                    "Resource": event.get("methodArn") or event.get("routeArn"),
                }
            ],
        },
        "context": {
            "headers": json.dumps(event.get("headers")),
            "multiValueHeaders": json.dumps(event.get("multiValueHeaders")),
            "cookies": json.dumps(event.get("cookies")),
        },
    }
