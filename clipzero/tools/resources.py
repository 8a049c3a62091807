"""The agent tools' resources: the running model, each store and each template set, as JSON."""

from __future__ import annotations

from typing import Any

from ..errors import LabelError

__all__ = ["list_resources", "read_resource"]


def list_resources(stores: dict[str, Any]) -> list[dict[str, str]]:
    """What a client may read (``uri``, ``name``, ``description``)."""
    from ..prompts import list_template_sets

    found = [{"uri": "clipzero://model", "name": "model", "description": "the model this server runs"}]
    found += [{"uri": f"clipzero://stores/{name}", "name": f"store {name}",
               "description": f"embedding store {name}: size, model, index"} for name in stores]  # fmt: skip
    found += [{"uri": f"clipzero://template-sets/{name}", "name": f"template set {name}",
               "description": f"the prompts of template set {name}"} for name in list_template_sets()]  # fmt: skip
    return found


def read_resource(uri: str, encoder: Any, stores: dict[str, Any]) -> dict[str, Any]:
    """The JSON content of one resource.

    Raises:
        LabelError: no such resource.
    """
    from ..prompts import list_template_sets, load_templates

    if uri == "clipzero://model":
        return {"spec": encoder.spec, "id": encoder.id, "embed_dim": encoder.embed_dim,
                "precision": encoder.precision, "device": str(encoder.device)}  # fmt: skip
    kind, _, name = uri.removeprefix("clipzero://").partition("/")
    if kind == "stores" and name in stores:
        return dict(stores[name].info())
    if kind == "template-sets" and name in list_template_sets():
        found = load_templates(name)
        return {"name": name, "language": found.language, "description": found.description,
                "templates": list(found.templates),
                "per_label": {k: list(v) for k, v in found.per_label.items()}}  # fmt: skip
    raise LabelError(f"no resource {uri!r}")
