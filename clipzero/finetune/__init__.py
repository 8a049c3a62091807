"""Adapting clipzero to one task: linear probe, LoRA, a training-free cache adapter, and honest evaluation.

- :mod:`.data`: labelled image sets (local class folders, hub datasets, WordNet-id folders) and few-shot sampling.
- :mod:`.linear_probe`: logistic regression on frozen embeddings (``--head FILE``).
- :mod:`.cache_adapter`: zero-shot plus a vote of the nearest labelled examples in a FAISS index (``--head DIR``).
- :mod:`.lora`: LoRA adapters on the image tower with peft (``--adapter DIR``).
- :mod:`.run`: ``clipzero eval`` and ``clipzero finetune``; :mod:`.metrics`: the report's numbers.

These need the ``finetune`` extra (``pip install 'clipzero[finetune]'``: peft, datasets, matplotlib).
"""
