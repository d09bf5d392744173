"""The local API gateway: HTTP requests → API Gateway REST proxy events (v1) → the template's functions.

Routes, the authorizer (with its result cache) and the gateway's own error responses all come from
template.yaml, so the local gateway answers as the deployed one does.
"""
