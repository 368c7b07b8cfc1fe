"""Configuration models and loader. Raises ConfigError (a ValueError) with per-key issues."""

from edge_agent.config.loader import ConfigError, ConfigIssue, load_config
from edge_agent.config.models import AgentConfig

__all__ = ["AgentConfig", "ConfigError", "ConfigIssue", "load_config"]
