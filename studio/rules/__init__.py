"""Rules files: the pure model of a collection's rules (`model`), their errors, and the rules folder
(`folder`: list, path, read, validate, save, load). Below the services: the services, the evolution
engine and the UI all import it; it imports none of them."""

from studio.rules.errors import RulesError, RulesNameError
from studio.rules.folder import (
    MAX_RULES_BYTES,
    check_rules_name,
    list_rules,
    load_collection,
    read_rules_text,
    rules_path,
    save_rules_text,
    validate_rules_text,
)
from studio.rules.model import Case, HeaderFromEnv, Rules, load_rules

__all__ = [
    "MAX_RULES_BYTES",
    "Case",
    "HeaderFromEnv",
    "Rules",
    "RulesError",
    "RulesNameError",
    "check_rules_name",
    "list_rules",
    "load_collection",
    "load_rules",
    "read_rules_text",
    "rules_path",
    "save_rules_text",
    "validate_rules_text",
]
