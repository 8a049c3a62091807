"""The agent door: clipzero's tools over the Model Context Protocol (``clipzero mcp``; the ``mcp`` extra).

:mod:`.server` builds the MCP server on the official SDK and runs it on stdio or streamable HTTP.
"""
