"""Resolve CloudFormation intrinsics of ``template.yaml`` against the local stack.

Only what the template uses for environment variables and settings: ``Ref`` (parameters, pseudo parameters,
resources), ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``, ``Fn::Select``, ``Fn::If`` is not supported. A
reference to a resource that no component has registered fails loudly, naming it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class UnresolvedReference(LookupError):
    pass


_SUB_RE = re.compile(r"\$\{([^}!][^}]*)\}")


@dataclass
class Resolver:
    parameters: Mapping[str, str]
    pseudo: Mapping[str, str]
    refs: Mapping[str, str] = field(default_factory=dict)
    attributes: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def ref(self, name: str) -> str:
        for source in (self.pseudo, self.parameters, self.refs):
            if name in source:
                return str(source[name])
        raise UnresolvedReference(
            f"template.yaml refers to {name!r}, which the local stack does not provide: a local component must "
            f"register it (stack.refs[{name!r}] = ...)"
        )

    def get_att(self, name: str, attribute: str) -> str:
        try:
            return str(self.attributes[(name, attribute)])
        except KeyError:
            raise UnresolvedReference(
                f"template.yaml refers to {name}.{attribute}, which the local stack does not provide: a local "
                f"component must register it (stack.attributes[({name!r}, {attribute!r})] = ...)"
            ) from None

    def _sub(self, text: str, variables: Mapping[str, Any]) -> str:
        def replace(match: re.Match[str]) -> str:
            key = match.group(1)
            if key in variables:
                return str(self.resolve(variables[key]))
            if "." in key:
                name, attribute = key.split(".", 1)
                return self.get_att(name, attribute)
            return self.ref(key)

        return _SUB_RE.sub(replace, text).replace("${!", "${")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {k: self.resolve(v) for k, v in value.items()}
        (key, arg), = value.items()
        if key == "Ref":
            return self.ref(str(arg))
        if key == "Fn::GetAtt":
            name, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
            return self.get_att(name, attribute)
        if key == "Fn::Sub":
            if isinstance(arg, list):
                return self._sub(str(arg[0]), arg[1] if len(arg) > 1 else {})
            return self._sub(str(arg), {})
        if key == "Fn::Join":
            sep, items = arg
            return str(sep).join(str(v) for v in self.resolve(items))
        if key == "Fn::Select":
            index, items = arg
            return self.resolve(items)[int(self.resolve(index))]
        if key.startswith("Fn::"):
            raise UnresolvedReference(f"the local stack cannot evaluate {key} in template.yaml")
        return {key: self.resolve(arg)}
