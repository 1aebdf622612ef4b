"""Pulumi declarations: the dev stack's Docker components and the prod stack's Cloud SQL components.

Modules named ``settings`` are pure (no Pulumi import) so the invoke tasks can read the same
stack shape without loading Pulumi.
"""
