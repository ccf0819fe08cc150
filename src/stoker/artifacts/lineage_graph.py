"""Upstream lineage graph of an artifact, and its renderings (Rich tree, Mermaid, DOT, JSON).

Edges come from each version's ``producer.used_artifacts`` (exact ``art://name:vN`` URIs)
and its ``source_datasets`` (external inputs such as ``hf://...`` or local files).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from stoker.errors import ArtifactError


@dataclass
class LineageNode:
    uri: str
    type: str
    producer: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    parents: list["LineageNode"] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri, "type": self.type, "created_at": self.created_at,
                "producer": self.producer, "sources": self.sources, "error": self.error,
                "inputs": [p.to_dict() for p in self.parents]}


def build_lineage(registry: Any, ref: str, *, max_depth: int = 32) -> LineageNode:
    seen: dict[str, LineageNode] = {}

    def visit(uri: str, depth: int) -> LineageNode:
        try:
            entry = registry.resolve(uri)
        except ArtifactError as e:
            return LineageNode(uri=uri, type="?", error=str(e))
        if entry.uri in seen:
            return seen[entry.uri]
        rec = entry.artifact
        producer = rec.get("producer") or {}
        node = LineageNode(uri=entry.uri, type=entry.type, producer=producer,
                           created_at=str(entry.created_at) if entry.created_at else None,
                           sources=list(rec.get("source_datasets") or []))
        seen[entry.uri] = node
        if depth < max_depth:
            for parent in producer.get("used_artifacts") or []:
                node.parents.append(visit(parent, depth + 1))
        return node

    return visit(ref, 0)


def _label(node: LineageNode) -> str:
    p = node.producer
    bits = [node.type]
    if p.get("run_id"):
        bits.append(f"run {p['run_id']}")
    if p.get("git_commit"):
        bits.append(f"git {p['git_commit'][:10]}{'+dirty' if p.get('git_dirty') else ''}")
    elif p.get("code_sha256"):  # the user's code is in no repository: its content hash
        bits.append(f"code {p['code_sha256'][:10]}")
    if p.get("config_hash"):
        bits.append(f"config {p['config_hash'][:10]}")
    return ", ".join(bits)


def to_rich_tree(node: LineageNode) -> Any:
    from rich.tree import Tree

    def add(tree: Any, n: LineageNode) -> None:
        for parent in n.parents:
            label = f"[bold]{parent.uri}[/]  {_label(parent)}" if not parent.error else f"[red]{parent.uri}[/]  {parent.error}"
            add(tree.add(label), parent)
        for s in n.sources:
            extra = ", ".join(f"{k}={s[k]}" for k in ("split", "num_rows", "size_bytes") if s.get(k) is not None)
            tree.add(f"[cyan]{s.get('uri')}[/]" + (f"  {extra}" if extra else ""))

    root = Tree(f"[bold]{node.uri}[/]  {_label(node)}")
    add(root, node)
    return root


def _walk(node: LineageNode, fn: Any, seen: set[str] | None = None) -> None:
    seen = set() if seen is None else seen
    if node.uri in seen:
        return
    seen.add(node.uri)
    fn(node)
    for p in node.parents:
        _walk(p, fn, seen)


def to_mermaid(node: LineageNode) -> str:
    ids: dict[str, str] = {}
    lines = ["flowchart BT"]

    def nid(key: str) -> str:
        return ids.setdefault(key, f"n{len(ids)}")

    def emit(n: LineageNode) -> None:
        lines.append(f'    {nid(n.uri)}["{n.uri}<br/>{n.type}"]')
        for p in n.parents:
            lines.append(f"    {nid(p.uri)} --> {nid(n.uri)}")
        for s in n.sources:
            key = f"src:{s.get('uri')}"
            lines.append(f'    {nid(key)}[("{s.get("uri")}")] --> {nid(n.uri)}')

    _walk(node, emit)
    return "\n".join(lines) + "\n"


def to_dot(node: LineageNode) -> str:
    lines = ["digraph lineage {", "  rankdir=BT;"]

    def q(s: str) -> str:
        return json.dumps(s)

    def emit(n: LineageNode) -> None:
        lines.append(f"  {q(n.uri)} [shape=box, label={q(n.uri + chr(10) + n.type)}];")
        for p in n.parents:
            lines.append(f"  {q(p.uri)} -> {q(n.uri)};")
        for s in n.sources:
            lines.append(f"  {q(str(s.get('uri')))} [shape=cylinder];")
            lines.append(f"  {q(str(s.get('uri')))} -> {q(n.uri)};")

    _walk(node, emit)
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_json(node: LineageNode) -> str:
    return json.dumps(node.to_dict(), indent=2, default=str) + "\n"
