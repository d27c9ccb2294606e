"""The IAM permissions the caller (you, on your workstation) needs for a GCP task.

One list, the source of the README's pasteable custom role, held by a test to what
the backend really calls: every call the fakes answered during the lifecycle tests
maps to one of these, and none here goes unused. Create the role once with
`gcloud iam roles create pulumiIterativeCaller --project <project> --file role.yaml`.
"""

from __future__ import annotations

ROLE_ID = "pulumiIterativeCaller"

# A permission -> why the backend needs it.
CALLER_PERMISSIONS: dict[str, str] = {
    # the task's bucket (or prefix) and its objects
    "storage.buckets.create": "make the task's bucket",
    "storage.buckets.get": "read it first, check a storage.container",
    "storage.buckets.delete": "remove the task's bucket on delete",
    "storage.buckets.getIamPolicy": "grant the machine identity this bucket only",
    "storage.buckets.setIamPolicy": "grant the machine identity this bucket only",
    "storage.objects.create": "upload the workdir, the task definition, the agent",
    "storage.objects.get": "status reports, logs, pulled outputs",
    "storage.objects.list": "status reports, logs, pulled outputs",
    "storage.objects.delete": "empty the bucket (or prefix) on delete",
    # the machine identity and what it may do
    "iam.serviceAccounts.create": "one service account per task",
    "iam.serviceAccounts.get": "read it first; check a permission_set",
    "iam.serviceAccounts.delete": "remove it on delete",
    "iam.serviceAccounts.actAs": "let the group's machines run as it",
    "iam.roles.get": "the shared machine role: read it first",
    "iam.roles.create": "the shared machine role, made once per project",
    "iam.roles.undelete": "the shared machine role, if someone deleted it",
    "iam.roles.update": "the shared machine role, if its permissions changed",
    "resourcemanager.projects.getIamPolicy": "bind that role to the task's account",
    "resourcemanager.projects.setIamPolicy": "bind that role, for the task's group only",
    # machines
    "compute.networks.get": "check the network",
    "compute.networks.updatePolicy": "add the deny-all firewall rule to it",
    "compute.firewalls.get": "the deny-all firewall rule: read it first",
    "compute.firewalls.create": "the deny-all firewall rule",
    "compute.firewalls.delete": "remove it on delete",
    "compute.images.getFromFamily": "pin the image family's newest image",
    "compute.images.get": "check a native image",
    "compute.images.useReadOnly": "boot the machines from it",
    "compute.instanceTemplates.get": "the task's instance template: read it first",
    "compute.instanceTemplates.create": "the task's instance template",
    "compute.instanceTemplates.delete": "remove it on delete",
    "compute.instanceTemplates.useReadOnly": "the group makes machines from it",
    "compute.instanceGroupManagers.get": "the group: read it first, status, events",
    "compute.instanceGroupManagers.create": "the task's regional managed instance group",
    "compute.instanceGroupManagers.update": "start machines, stop (resize to 0)",
    "compute.instanceGroupManagers.delete": "remove it on delete",
    "compute.instances.create": "the group makes machines as you",
    "compute.instances.setMetadata": "the group makes machines as you",
    "compute.instances.setLabels": "the group makes machines as you",
    "compute.instances.setTags": "the group makes machines as you",
    "compute.instances.setServiceAccount": "the group makes machines as you",
    "compute.instances.delete": "the group deletes machines as you",
    "compute.disks.create": "the group makes machines as you",
    "compute.subnetworks.use": "the group makes machines as you",
    "compute.subnetworks.useExternalIp": "machines reach the bucket and package mirrors",
    "compute.instances.list": "the machines' addresses, for status",
    "compute.globalOperations.list": "the machines' operations: events, and when a "
    "deleted or preempted machine stopped billing",
    "compute.regionOperations.get": "wait for group operations",
    "compute.globalOperations.get": "wait for template and firewall operations",
}
# Used by GCE itself when the group makes machines with your rights (not calls this
# package makes, so the tests cannot see them).
ON_YOUR_BEHALF = frozenset(
    {
        "iam.serviceAccounts.actAs",
        "compute.images.useReadOnly",
        "compute.instanceTemplates.useReadOnly",
        "compute.instances.create",
        "compute.instances.setMetadata",
        "compute.instances.setLabels",
        "compute.instances.setTags",
        "compute.instances.setServiceAccount",
        "compute.instances.delete",
        "compute.disks.create",
        "compute.subnetworks.use",
        "compute.subnetworks.useExternalIp",
        "compute.networks.updatePolicy",
        "compute.regionOperations.get",
        "compute.globalOperations.get",
    }
)
# Not needed with `permission_set` (the given service account is used as it is).
IDENTITY_ONLY = frozenset(
    {
        "iam.serviceAccounts.create",
        "iam.serviceAccounts.delete",
        "iam.roles.get",
        "iam.roles.create",
        "iam.roles.undelete",
        "iam.roles.update",
        "resourcemanager.projects.getIamPolicy",
        "resourcemanager.projects.setIamPolicy",
        "storage.buckets.getIamPolicy",
        "storage.buckets.setIamPolicy",
    }
)


def role_yaml() -> str:
    """The caller's custom role, for `gcloud iam roles create --file`."""
    lines = [
        "title: pulumi-iterative caller",
        "description: Create, watch and delete pulumi-iterative tasks on GCP",
        "stage: GA",
        "includedPermissions:",
        *(f"- {p}" for p in sorted(CALLER_PERMISSIONS)),
    ]
    return "\n".join(lines) + "\n"
