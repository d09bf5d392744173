"""The embedded local stack: moto as the AWS side, a local API gateway, a local Fargate agent."""
