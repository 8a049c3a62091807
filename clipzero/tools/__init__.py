"""Tools for LLM agents: one definition of each tool (:mod:`.specs`) and the work behind them (:mod:`.toolbox`)."""

from __future__ import annotations

from .specs import TOOL_NAMES, ToolLimits, ToolSpec, json_schema_tools, openai_tools, tool_specs

__all__ = ["TOOL_NAMES", "ToolLimits", "ToolSpec", "json_schema_tools", "openai_tools", "tool_specs"]
