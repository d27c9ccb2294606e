"""Who may do what: bearer tokens -> users, users -> the rules of their Roles.

`admin` tokens may do anything (a cluster admin's kubeconfig). Any other user is
allowed only what a RoleBinding in the request's namespace grants it through a
Role stored in the fake: service accounts (`system:serviceaccount:<ns>:<name>`,
their tokens are made when the account is created) and named users (a caller
restricted to the README's role). The rule matching is the API server's:
apiGroups, resources (with `pods/log` style subresources), verbs, resourceNames.
"""

from __future__ import annotations

from dataclasses import dataclass

from .store import BY_PLURAL, Store


@dataclass(frozen=True)
class Request:
    user: str
    verb: str  # get, list, create, update, patch, delete, deletecollection
    group: str
    resource: str  # plural
    subresource: str
    namespace: str
    name: str


def allowed(store: Store, req: Request, admins: frozenset[str]) -> bool:
    if req.user in admins:
        return True
    if not req.namespace:
        return False
    resource = f"{req.resource}/{req.subresource}" if req.subresource else req.resource
    for binding in store.list(BY_PLURAL["rolebindings"], req.namespace):
        if not any(_is_subject(s, req.user) for s in binding.get("subjects") or []):
            continue
        ref = binding.get("roleRef") or {}
        if ref.get("kind") != "Role":
            continue
        role = store.find(BY_PLURAL["roles"], req.namespace, ref.get("name", ""))
        if role is None:
            continue
        for rule in role.get("rules") or []:
            if _rule_allows(rule, req, resource):
                return True
    return False


def _is_subject(subject: dict[str, str], user: str) -> bool:
    if subject.get("kind") == "ServiceAccount":
        return user == f"system:serviceaccount:{subject.get('namespace')}:{subject.get('name')}"
    return subject.get("kind") == "User" and subject.get("name") == user


def _rule_allows(rule: dict[str, list[str]], req: Request, resource: str) -> bool:
    groups = rule.get("apiGroups") or []
    if "*" not in groups and req.group not in groups:
        return False
    resources = rule.get("resources") or []
    if "*" not in resources and resource not in resources:
        return False
    verbs = rule.get("verbs") or []
    if "*" not in verbs and req.verb not in verbs:
        return False
    names = rule.get("resourceNames") or []
    return not names or (bool(req.name) and req.name in names)


def forbidden_message(req: Request) -> str:
    resource = f"{req.resource}/{req.subresource}" if req.subresource else req.resource
    target = f'{req.resource} "{req.name}"' if req.name else req.resource
    where = f' in the namespace "{req.namespace}"' if req.namespace else " at the cluster scope"
    return (
        f'{target} is forbidden: User "{req.user}" cannot {req.verb} resource "{resource}" '
        f'in API group "{req.group}"{where}'
    )
