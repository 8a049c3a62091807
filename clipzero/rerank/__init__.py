"""LLM re-ranking of CLIP's shortlist over any OpenAI-compatible server, and LLM-written label descriptions.

Needs the ``llm`` extra (``pip install 'clipzero[llm]'``: httpx).
"""

from .client import ChatClient, ChatReply, LLMError, ResponseCache, client_from_env
from .reranker import AnswerError, Reranker, RerankResult, parse_answer
from .templates import LLMTemplate, list_llm_templates, load_llm_template

__all__ = [
    "AnswerError",
    "ChatClient",
    "ChatReply",
    "LLMError",
    "LLMTemplate",
    "RerankResult",
    "Reranker",
    "ResponseCache",
    "client_from_env",
    "list_llm_templates",
    "load_llm_template",
    "parse_answer",
]
