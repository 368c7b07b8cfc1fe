"""Configuration: the shared sections (models), and the TOML/YAML loader that maps errors to key path and line.

Raises ConfigError (a ValueError) with per-key issues. The agent's whole config model and `load_config` are in
edge_agent/registry.py, built from these sections and every registered role's own model.
"""

from edge_agent.config.loader import ConfigError, ConfigIssue, load

__all__ = ["ConfigError", "ConfigIssue", "load"]
