# lambda_authorizer.py
import jwt
import os
SECRET_KEY = os.environ['JWT_SECRET']
def lambda_handler(event, context):
    """
    Token-based Lambda Authorizer
    """
    token = event.get('authorizationToken', '').replace('Bearer ', '')
    method_arn = event['methodArn']
    try:
        # Validate JWT token
        payload = jwt.decode(token, SECRET_KEY, algorithms=['HS256'])
        user_id = payload.get('sub')
        # Return IAM policy allowing access
        return generate_policy(user_id, 'Allow', method_arn)
    except jwt.ExpiredSignatureError:
        raise Exception('Unauthorized') # 401
    except jwt.InvalidTokenError:
        raise Exception('Unauthorized') # 401
def generate_policy(principal_id, effect, resource):
    return {
        'principalId': principal_id,
        'policyDocument': {
            'Version': '2012-10-17',
            'Statement': [{
                'Action': 'execute-api:Invoke',
                'Effect': effect,
                'Resource': resource
            }]
        },
        'context': {
            'userId': principal_id # Pass to downstream Lambda
        }
    }
