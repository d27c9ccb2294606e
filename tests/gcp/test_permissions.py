"""The caller's permissions in the README come from one list (clouds/gcp/permissions.py),
held here to what the backend really calls: every request the caller made during a whole
task (create, status, delete) needs a permission on the list, and the list holds
nothing the calls do not need, except what GCE checks on the caller's behalf."""

from __future__ import annotations

from pathlib import Path

from pulumi_iterative.clouds.gcp import permissions
from tests.gcp.conftest import Gcp
from tests.gcp.fake_gcs import caller_permission
from tests.gcp.fake_iam import CALLER_NEEDS, NEEDS_NO_PERMISSION

README = Path(__file__).resolve().parents[2] / "README.md"
# Used only on paths one task does not take: a role someone deleted or changed by hand,
# a native image id.
RARE = {"iam.roles.undelete", "iam.roles.update", "compute.images.get"}


def check_caller_permissions(gcp: Gcp) -> None:
    """After a whole task (create, status, delete) in the fakes: called by test_lifecycle,
    which runs one anyway."""
    caller = [  # machines carry their token
        c for c in gcp.fake.requests if not c.auth and c.method not in NEEDS_NO_PERMISSION
    ]
    used = {CALLER_NEEDS.get(c.method, f"unmapped {c.method}") for c in caller}
    used |= {caller_permission(gcp.gcs, r) for r in gcp.gcs.requests if not r.auth}
    listed = set(permissions.CALLER_PERMISSIONS)
    assert used - listed == set(), "calls the README's role does not allow"
    assert listed - used - permissions.ON_YOUR_BEHALF - RARE == set(), "listed but never used"


def test_readme_shows_the_role_from_the_list() -> None:
    text = README.read_text()
    assert permissions.role_yaml() in text
    for permission in sorted(permissions.IDENTITY_ONLY):
        assert permission in permissions.CALLER_PERMISSIONS
