"""The tether prod hardening policy pack: assembles the rules of infra/policy_rules.py (starts a server)."""

import sys
from pathlib import Path

# Pulumi runs the pack from this folder; the repository root makes `infra` importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pulumi_policy import EnforcementLevel, PolicyPack

from infra.policy_rules import PACK_NAME, build_policies

PolicyPack(name=PACK_NAME, policies=build_policies(), enforcement_level=EnforcementLevel.MANDATORY)
